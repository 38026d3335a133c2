package config

import (
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
)

// FuzzParse checks that no input makes Parse panic, and that a config it
// accepts validates and renders its nodes.
func FuzzParse(f *testing.F) {
	testio.AddFiles(f, filepath.Join("testdata", "*.json"))
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
