package restore

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
)

// TestRun_SkipsDamagedBackup: a newer backup whose metadata cannot be
// parsed does not stop a restore: automatic selection skips it and restores
// the sound one; asking for the damaged one by name is refused, naming it.
func TestRun_SkipsDamagedBackup(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	ctx := context.Background()
	damaged := "2026-01-03_03-00_0"
	md := f.info.ToMetadata()
	md[archive.MetaStartTime] = t0.Add(24 * time.Hour).Format(time.RFC3339)
	md[archive.MetaEndLSN] = "0/zzz"
	if err := f.a.Store.Put(ctx, f.a.Layout.BackupKey(damaged), bytes.NewReader([]byte("x")), md); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, f.options(filepath.Join(t.TempDir(), "data")))
	if err != nil {
		t.Fatalf("Run = %v, want the sound backup restored", err)
	}
	if res.Backup.Name != testBackup {
		t.Errorf("restored %s, want %s", res.Backup.Name, testBackup)
	}
	o := f.options(filepath.Join(t.TempDir(), "data"))
	o.Backup = damaged
	_, err = Run(ctx, o)
	if !errors.Is(err, ErrDamagedBackup) || !strings.Contains(err.Error(), damaged) || !strings.Contains(err.Error(), archive.MetaEndLSN) {
		t.Fatalf("Run(%s) = %v, want ErrDamagedBackup naming it and its bad field", damaged, err)
	}
}
