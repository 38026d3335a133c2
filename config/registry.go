package config

import (
	"encoding/json"
	"sort"
	"strings"
)

//go:generate go run ../docs/gen -dir ../docs

// KeyDoc describes one configuration key for the reference.
type KeyDoc struct {
	// Path is the JSON path; "<site>" and "<key-id>" stand for a site name
	// and an encryption key id.
	Path    string
	Type    string // JSON type: "string", "integer or null", "seconds", "object", ...
	Default string // the default as JSON, or a description of a computed one
	// Env names the HOARD_* variables that override it, comma-separated
	// ("" = none); object_storage keys have one per storage type.
	Env    string
	Doc    string
	Secret bool // `hoard config show` masks the value
	// Storage lists the storage types an object_storage key applies to.
	Storage []string
}

// Keys lists every key the configuration file accepts, sorted by path. The
// list comes from the decoder's own field tables (walked instead of
// decoding), so it cannot drift from what Load reads; docs/configuration.md
// is generated from it (go generate ./config).
func Keys() []KeyDoc {
	env := map[string]string{}
	for _, ev := range EnvVars {
		if ev.Key == "" {
			continue
		}
		k := ev.Key
		if ev.Site {
			k = "backup_sites." + sitePlaceholder + "." + k
		}
		if env[k] != "" {
			env[k] += ", "
		}
		env[k] += ev.Name
	}
	storagePath := "backup_sites." + sitePlaceholder + ".object_storage."
	var out []KeyDoc
	for _, e := range walkConfig(New(), true) {
		k := KeyDoc{
			Path:   e.path,
			Type:   e.typ,
			Env:    env[e.path],
			Doc:    keyDocs[e.path].doc,
			Secret: secretKeys[lastElem(e.path)],
		}
		k.Default = keyDocs[e.path].def
		if k.Default == "" {
			k.Default = defaultText(e.typ, jsonValue(e.val))
		}
		if name, ok := strings.CutPrefix(e.path, storagePath); ok {
			k.Storage = storageTypesOf(name)
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// defaultText prints a default as JSON; "" for an empty string or an
// object without a value.
func defaultText(typ string, v any) string {
	if v == nil && typ == "object" {
		return ""
	}
	if s, ok := v.(string); ok && s == "" {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// storageTypesOf lists the storage types accepting an object_storage key.
func storageTypesOf(key string) []string {
	if key == "storage_type" || key == "prefix" {
		return nil
	}
	var types []string
	for _, typ := range []string{StorageLocal, StorageS3, StorageGoogle, StorageAzure, StorageURL} {
		for _, k := range storageKeys[typ] {
			if k == key {
				types = append(types, typ)
			}
		}
	}
	return types
}
