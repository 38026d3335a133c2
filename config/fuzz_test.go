package config

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse checks that no input makes Parse panic, and that a config it
// accepts validates and renders its nodes.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"backup_sites": {"a": {"nodes": ["host='x"], "basebackup_count": 1e400}}}`))
	f.Add([]byte(`{"backup_location": "/b", "backup_sites": {"a": {"object_storage": {"url": "%zz"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.json", data, nil)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate rejects: %v", err)
		}
		for _, s := range c.BackupSites {
			for _, n := range s.Nodes {
				_ = n.ConnString()
				_ = n.Redacted()
			}
			s.BasebackupInterval()
			s.BasebackupMaxAge()
		}
	})
}

// FuzzOrdered checks that AddEncryptionKey's order-keeping re-encoding
// never changes what a JSON document means.
func FuzzOrdered(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"a": 1, "a": [2, {"b": "\u00e9\n"}], "c": -0.5e-3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decodeOrdered(data)
		if err != nil {
			return
		}
		var want any
		if err := json.Unmarshal(data, &want); err != nil {
			t.Skipf("decodeOrdered accepted what json.Unmarshal rejects: %v", err)
		}
		var buf bytes.Buffer
		if err := writeOrdered(&buf, v, ""); err != nil {
			t.Fatal(err)
		}
		var got any
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("re-encoded JSON does not parse: %v\n%s", err, buf.Bytes())
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("meaning changed (-want +got):\n%s", diff)
		}
	})
}
