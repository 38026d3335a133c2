package daemon

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// TestSupervisor_RetentionDamagedWAL: while the site holds a backup whose
// metadata cannot be read, retention deletes no WAL (archive's
// keepDamagedWAL), and the daemon says so at warn level, naming the
// backup, once while the reason stays the same, rather than letting the
// WAL grow unexplained.
func TestSupervisor_RetentionDamagedWAL(t *testing.T) {
	ctx := context.Background()
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{}, Site: "main"}
	put := func(key string, md storage.Metadata) {
		t.Helper()
		if err := a.Store.Put(ctx, key, strings.NewReader("x"), md); err != nil {
			t.Fatal(err)
		}
	}
	sound := &archive.BackupInfo{StartTime: time.Now().Add(-time.Hour), StartWALSegment: "000000010000000000000004"}
	put(a.Layout.BackupKey("2024-05-02_0"), sound.ToMetadata())
	put(a.Layout.BackupKey("2024-05-01_0"), storage.Metadata{archive.MetaStartTime: "last week"})
	for _, seg := range []string{"000000010000000000000002", "000000010000000000000003"} {
		put(a.Layout.WALKey(seg), nil)
	}
	d := testDaemon(t)
	var logged bytes.Buffer // s.retention logs in this goroutine
	d.log = zerolog.New(&logged)
	s := newSupervisor(d, Site{Name: "main", Active: true, Retention: archive.RetentionPolicy{MaxCount: 1}})
	s.sysID, s.sysIDAt = "7123456789012345678", time.Now()
	s.retention(ctx, a)
	s.retention(ctx, a)
	if _, err := a.Store.Stat(ctx, a.Layout.WALKey("000000010000000000000002")); err != nil {
		t.Errorf("WAL before the sound backup's start, with a damaged backup in the site: %v", err)
	}
	lines := linesWith(logged.String(), "no WAL deleted")
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"warn"`) || !strings.Contains(lines[0], "2024-05-01_0") {
		t.Errorf("warnings on the kept WAL %q, want one naming the damaged backup; log:\n%s", lines, logged.String())
	}
}

// linesWith returns the lines of s that hold sub.
func linesWith(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
