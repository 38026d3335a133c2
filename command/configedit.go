package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/storage"
)

// errKeyExists means addEncryptionKey was given a key id already present.
var errKeyExists = errors.New("encryption key id already exists")

// addEncryptionKey adds a key pair under backup_sites.<site>.encryption_keys
// of the JSON file at path and makes it the site's encryption_key_id. Every
// other key and value is kept in its order; the file is re-indented with 4
// spaces. It refuses a key id that already exists (errKeyExists). site ""
// means the only site. The file is replaced atomically and keeps its owner,
// group and mode, less any permission for others, since it now holds a
// private key: `sudo hoard create-keys` on a root:postgres 0640 file leaves
// a root:postgres 0640 file that the service can still read.
func addEncryptionKey(path, site, keyID, publicPEM, privatePEM string) error {
	if keyID == "" {
		return errors.New("add encryption key: empty key id")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("add encryption key: %w", err)
	}
	root, err := decodeOrdered(data)
	if err != nil {
		return fmt.Errorf("add encryption key: parse %s: %w", path, err)
	}
	top, ok := root.(*object)
	if !ok {
		return fmt.Errorf("add encryption key: %s: top level is not an object", path)
	}
	sites, ok := top.get("backup_sites").(*object)
	if !ok {
		return fmt.Errorf("add encryption key: %s: backup_sites: %w", path, config.ErrNoSites)
	}
	if site == "" {
		switch len(sites.keys) {
		case 0:
			return fmt.Errorf("add encryption key: %s: %w", path, config.ErrNoSites)
		case 1:
			site = sites.keys[0]
		default:
			return fmt.Errorf("add encryption key: %s has sites %s: pass --site", path, strings.Join(sites.keys, ", "))
		}
	}
	s, ok := sites.get(site).(*object)
	if !ok {
		return fmt.Errorf("add encryption key: site %q: %w (have: %s)", site, config.ErrUnknownSite, strings.Join(sites.keys, ", "))
	}
	keys, ok := s.get("encryption_keys").(*object)
	if !ok {
		keys = &object{}
		s.set("encryption_keys", keys)
	}
	if keys.has(keyID) {
		return fmt.Errorf("add encryption key %q to site %s: %w", keyID, site, errKeyExists)
	}
	pair := &object{}
	if privatePEM != "" {
		pair.set("private", privatePEM)
	}
	pair.set("public", publicPEM)
	keys.set(keyID, pair)
	s.set("encryption_key_id", keyID)

	var buf bytes.Buffer
	if err := writeOrdered(&buf, root, ""); err != nil {
		return fmt.Errorf("add encryption key: %w", err)
	}
	buf.WriteByte('\n')
	if err := replaceFile(path, buf.Bytes()); err != nil {
		return fmt.Errorf("add encryption key: %w", err)
	}
	return nil
}

// object is a JSON object that remembers its key order.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) get(k string) any { return o.vals[k] }

func (o *object) has(k string) bool { _, ok := o.vals[k]; return ok }

func (o *object) set(k string, v any) {
	if o.vals == nil {
		o.vals = map[string]any{}
	}
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// decodeOrdered decodes JSON into *object, []any, json.Number, string, bool
// and nil, keeping key order.
func decodeOrdered(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the top-level value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &object{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is %v", kt)
				}
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				o.set(k, v)
			}
			_, err := dec.Token()
			return o, err
		case '[':
			a := []any{}
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token()
			return a, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	}
	return tok, nil
}

// writeOrdered writes v as JSON indented with 4 spaces, each line after
// the first starting with prefix.
func writeOrdered(w *bytes.Buffer, v any, prefix string) error {
	compact, err := marshal(v)
	if err != nil {
		return err
	}
	return json.Indent(w, compact, prefix, "    ")
}

// MarshalJSON writes o with its keys in their order.
func (o *object) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, k := range o.keys {
		if i > 0 {
			b = append(b, ',')
		}
		kv, err := marshal(k)
		if err != nil {
			return nil, err
		}
		vv, err := marshal(o.vals[k])
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, kv...), ':'), vv...)
	}
	return append(b, '}'), nil
}

// marshal encodes v as compact JSON, leaving <, > and & as they are (the
// file is not HTML) and json.Number as written.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// replaceFile replaces the file at path with data atomically, keeping its
// owner, group and mode less the permissions for others. It refuses, rather
// than hand the file to another owner, when it cannot give the new file the
// old one's owner and group (not root, and not their owner). When path is
// a link, the file it names is replaced and the link stays: a copy in the
// link's place would hold the new key only until configuration management
// puts the link back.
func replaceFile(path string, data []byte) error {
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return storage.WriteFileAtomic(path, bytes.NewReader(data), func(f *os.File) error {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
				return keepOwnerError(st.Uid, st.Gid, path, err)
			}
		}
		// After the chown, which clears set-id bits.
		return f.Chmod(fi.Mode().Perm() &^ 0o007)
	})
}

// errKeepOwner is returned (wrapped) by replaceFile when the new file
// cannot be given the old one's owner and group: only root gives a file
// to another user, and its owner only to a group the owner is in.
var errKeepOwner = errors.New("cannot give the new file the old one's owner and group")

// keepOwnerError is replaceFile's error when the new file cannot be given
// the old one's owner uid and group gid.
func keepOwnerError(uid, gid uint32, path string, err error) error {
	return fmt.Errorf("keep owner %d and group %d of %s (run as root, or as the file's owner "+
		"when it is a member of the file's group): %w: %w", uid, gid, path, errKeepOwner, err)
}
