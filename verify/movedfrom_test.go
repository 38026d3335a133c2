package verify

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/storetest"
)

// movedArchive returns site "new", in its own mem store with its own
// key pair, that moved from site "old", in another mem store with
// another key pair: old holds backup b1 (segments 2 to 3) and its WAL,
// new holds backup b2 (segment 5) and the WAL from segment 4 on, as
// after a move. old's objects read only through old's store and codec.
func movedArchive(t *testing.T) (newSite, old *archive.Archive) {
	t.Helper()
	old = encryptedArchive(t)
	old.Site, old.Layout = "old", archive.Layout{Prefix: "old"}
	putBackup(t, old, "b1", 1, 2, 3, t0)
	putSegments(t, old, 1, 1, 3)
	newSite = encryptedArchive(t)
	newSite.Site, newSite.Layout = "new", archive.Layout{Prefix: "new"}
	newSite.MovedFrom = []*archive.Archive{old}
	putBackup(t, newSite, "b2", 1, 5, 5, t0.Add(time.Hour))
	putSegments(t, newSite, 1, 4, 7)
	return newSite, old
}

// TestRun_MovedFrom: verify checks the backups of the sites the site
// moved from, as restore and list count them, each read from the site
// that holds it (its store, layout and codec), and names that site. It
// checked the site's own backups only: a moved_from backup restore would
// choose was never looked at.
func TestRun_MovedFrom(t *testing.T) {
	for _, full := range []bool{false, true} {
		a, _ := movedArchive(t)
		rep := run(t, a, full)
		if !rep.OK() {
			t.Fatalf("full=%v: not OK:\n%s", full, problems(rep))
		}
		var got []string
		for _, b := range rep.Backups {
			got = append(got, b.Name+"@"+b.Site)
		}
		if want := "b1@old b2@new"; strings.Join(got, " ") != want {
			t.Fatalf("full=%v: backups %v, want %s", full, got, want)
		}
		if b := rep.Backups[0]; b.ReachSegment != seg(1, 7) {
			t.Errorf("full=%v: b1 reaches %s, want %s (through the new site's WAL)", full, b.ReachSegment, seg(1, 7))
		}
	}
}

// TestRun_MovedFromErrChunk: a missing, or (with --full) tampered, chunk
// of a moved_from backup makes it broken, named with its key in the old
// site.
func TestRun_MovedFromErrChunk(t *testing.T) {
	t.Run("ErrMissing", func(t *testing.T) {
		a, old := movedArchive(t)
		key := old.Layout.ChunkKey(archive.ChunkFilename("b1", 2))
		if err := old.Store.Delete(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		rep := run(t, a, false)
		if rep.OK() || rep.Backups[0].Status != StatusBroken || !strings.Contains(problems(rep), "chunk "+key+": missing") {
			t.Fatalf("OK=%v problems:\n%s", rep.OK(), problems(rep))
		}
		if rep.Backups[1].Status != StatusOK {
			t.Errorf("b2: %s %v", rep.Backups[1].Status, rep.Backups[1].Problems)
		}
	})
	t.Run("ErrTampered", func(t *testing.T) {
		a, old := movedArchive(t)
		key := old.Layout.ChunkKey(archive.ChunkFilename("b1", 1))
		storetest.Tamper(t, old.Store, key)
		rep := run(t, a, true)
		if rep.OK() || rep.Backups[0].Status != StatusBroken || !strings.Contains(problems(rep), "chunk "+key+": ") {
			t.Fatalf("OK=%v problems:\n%s", rep.OK(), problems(rep))
		}
	})
}

// TestRun_MovedFromErrWALGap: a segment missing from the old site's WAL
// between the moved_from backup's start and end makes it broken.
func TestRun_MovedFromErrWALGap(t *testing.T) {
	a, old := movedArchive(t)
	if err := old.Store.Delete(context.Background(), old.Layout.WALKey(seg(1, 3))); err != nil {
		t.Fatal(err)
	}
	rep := run(t, a, false)
	if rep.OK() || rep.Backups[0].Name != "b1" || rep.Backups[0].Status != StatusBroken ||
		!strings.Contains(problems(rep), seg(1, 3)) {
		t.Fatalf("OK=%v backups %+v problems:\n%s", rep.OK(), rep.Backups, problems(rep))
	}
}

// TestRun_SiteUnnamed: a site without moved_from reports no site per
// backup (its JSON is as before).
func TestRun_SiteUnnamed(t *testing.T) {
	rep := run(t, soundArchive(t), false)
	if b := rep.Backups[0]; b.Site != "" {
		t.Errorf("site %q, want none", b.Site)
	}
}

// TestRun_MovedFromDamagedBackup: a backup of the old site whose metadata
// cannot be read is a problem naming it and its site.
func TestRun_MovedFromDamagedBackup(t *testing.T) {
	a, old := movedArchive(t)
	bad := putBackup(t, old, "b0", 1, 1, 1, t0.Add(-time.Hour))
	md := bad.ToMetadata()
	md[archive.MetaStartTime] = "half past nine"
	body := []byte("control")
	if _, err := old.Codec.Put(context.Background(), old.Store, bad.Key, bytes.NewReader(body), int64(len(body)), md); err != nil {
		t.Fatal(err)
	}
	rep := run(t, a, false)
	if p := strings.Join(rep.Problems, "\n"); rep.OK() || !strings.Contains(p, "backup b0 of site old is damaged") {
		t.Fatalf("OK=%v problems %q", rep.OK(), p)
	}
}
