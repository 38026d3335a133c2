package restore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestWriteRecoveryConfig_Links: links someone placed in a data directory
// (restore makes none) are never written or read through. A link at
// postgresql.auto.conf or PG_VERSION is refused, and PG_VERSION's target
// is not shown; a link at a signal file is replaced, not followed.
func TestWriteRecoveryConfig_Links(t *testing.T) {
	for _, name := range []string{"postgresql.auto.conf", "PG_VERSION", "recovery.signal", "standby.signal"} {
		t.Run(name, func(t *testing.T) {
			e := hostile.NewEnv(t)
			dir := e.Target()
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if name != "PG_VERSION" {
				if err := os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(e.Victim(), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
			before := e.Snapshot(t)
			err := WriteRecoveryConfig(dir, RecoveryConfig{RestoreCommand: testRestoreCommand})
			switch name {
			case "postgresql.auto.conf", "PG_VERSION":
				if !errors.Is(err, ErrUnsafeMember) || !strings.Contains(err.Error(), name) {
					t.Errorf("WriteRecoveryConfig = %v, want ErrUnsafeMember naming %s", err, name)
				}
				if err != nil && strings.Contains(err.Error(), strings.TrimSpace(hostile.Secret)) {
					t.Errorf("the error shows the link's target: %v", err)
				}
			case "recovery.signal":
				if err != nil {
					t.Fatal(err)
				}
				if fi, err := os.Lstat(filepath.Join(dir, name)); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("%s is not a regular file now: %v", name, err)
				}
			case "standby.signal":
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the link at %s was not removed: %v", name, err)
				}
			}
			if diff := cmp.Diff(before, e.Snapshot(t)); diff != "" {
				t.Errorf("outside the data directory (-before +after):\n%s", diff)
			}
		})
	}
}

func TestPGMajor(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]int{"15\n": 15, "9.6\n": 9, "18": 18} {
		if err := os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := PGMajor(dir); err != nil || got != want {
			t.Errorf("PGMajor(%q) = %d, %v; want %d", content, got, err, want)
		}
	}
	for _, content := range []string{"", "x", "-3\n", strings.Repeat("1", 100)} {
		if err := os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := PGMajor(dir); err == nil || strings.Contains(err.Error(), strings.Repeat("1", 20)) {
			t.Errorf("PGMajor(%q) = %v, want an error that does not quote it all", content, err)
		}
	}
}

// swapStore serves other instead of key's object from the second Open of
// key on: a control object replaced while the chunks were restored.
type swapStore struct {
	storage.Store
	key   string
	other []byte
	opens atomic.Int32
}

func (s *swapStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, md, err := s.Store.Open(ctx, key)
	if err != nil || key != s.key || s.opens.Add(1) == 1 {
		return rc, md, err
	}
	rc.Close()
	return io.NopCloser(bytes.NewReader(s.other)), md, nil
}

// TestRun_ErrControlChanged: restore reads the control object before the
// chunks (to plan) and after them (to extract it); if it changed in
// between, the restore fails and pg_control is not written.
func TestRun_ErrControlChanged(t *testing.T) {
	e := hostile.NewEnv(t)
	a := hostileArchive(t)
	other := hostileArchive(t)
	// The same size, one byte apart.
	b := hostile.Benign()
	b.Control = []hostile.Member{{Name: "pgdata/extra", Body: "x"}}
	st := hostile.Put(t, a, b)
	b.Control = []hostile.Member{{Name: "pgdata/extra", Body: "y"}}
	hostile.Put(t, other, b)
	changed, _ := storetest.Read(t, other.Store, st.ControlKey)
	a.Store = &swapStore{Store: a.Store, key: st.ControlKey, other: changed}
	_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Backup: st.Name, Logger: zerolog.Nop()})
	if !errors.Is(err, ErrSizeMismatch) || !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), st.ControlKey) {
		t.Fatalf("Run = %v, want ErrSizeMismatch and ErrIncomplete naming %s", err, st.ControlKey)
	}
	if _, err := os.Lstat(filepath.Join(e.Target(), "global", "pg_control")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pg_control written from a changed control object: %v", err)
	}
}
