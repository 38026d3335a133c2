package restore

import (
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/storetest"
)

// TestRun_ListsWALOnce: a restore lists the site's xlog/ once, for its
// check that the backup's WAL is stored, its .partial tail and the
// damaged entries it names. In a site kept for years that folder holds
// hundreds of thousands of segments: each listing is hundreds of
// requests and seconds. Before, the check listed it twice: once for the
// segments (listWAL) and once for the rest (ListStoredWAL).
func TestRun_ListsWALOnce(t *testing.T) {
	const name = "2026-01-02_03-00_0"
	files := newChainFiles().parent
	maps.DeleteFunc(files, func(k string, _ string) bool { return strings.HasPrefix(k, "pg_tblspc/") })
	a := hostileArchive(t)
	hostile.Put(t, a, chainBackup(t, name, "", files, files, nil))
	st := &storetest.Counter{Store: a.Store}
	a.Store = st
	e := hostile.NewEnv(t)
	if _, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Backup: name,
		RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()}); err != nil {
		t.Fatalf("restore of %s: %v", name, err)
	}
	if got, want := st.Lists(a.Layout.Dir(archive.XLogDir)), 1; got != want {
		t.Errorf("restore listed %s %d times, want %d", a.Layout.Dir(archive.XLogDir), got, want)
	}
}
