package daemon

import (
	"bytes"
	"context"
	"errors"
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
	a, put := memSite(t)
	sound := &archive.BackupInfo{StartTime: time.Now().Add(-time.Hour), StartWALSegment: "000000010000000000000004"}
	put(a.Layout.BackupKey("2024-05-02_0"), sound.ToMetadata())
	put(a.Layout.BackupKey("2024-05-01_0"), storage.Metadata{archive.MetaStartTime: "last week"})
	for _, seg := range []string{"000000010000000000000002", "000000010000000000000003"} {
		put(a.Layout.WALKey(seg), nil)
	}
	s, logged := retentionSupervisor(t, archive.RetentionPolicy{MaxCount: 1})
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

// memSite returns site "main" in memory and a function that stores an
// object in it with md.
func memSite(t *testing.T) (*archive.Archive, func(key string, md storage.Metadata)) {
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{}, Site: "main"}
	return a, func(key string, md storage.Metadata) {
		t.Helper()
		if err := a.Store.Put(context.Background(), key, strings.NewReader("x"), md); err != nil {
			t.Fatal(err)
		}
	}
}

// retentionSupervisor returns the supervisor of site "main" with policy
// p, its node's system identifier known, and the buffer it logs to
// (s.retention logs in the caller's goroutine).
func retentionSupervisor(t *testing.T, p archive.RetentionPolicy) (*supervisor, *bytes.Buffer) {
	d := testDaemon(t)
	var logged bytes.Buffer
	d.log = zerolog.New(&logged)
	s := newSupervisor(d, Site{Name: "main", Active: true, Retention: p})
	s.sysID, s.sysIDAt = "7123456789012345678", time.Now()
	return s, &logged
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

// listingHides is a store whose listings leave out one key (Stat and Open
// still find it): a storage that lies by omission.
type listingHides struct {
	storage.Store
	key string
}

func (s listingHides) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	return s.Store.List(ctx, prefix, func(o storage.Object) error {
		if o.Key == s.key {
			return nil
		}
		return fn(o)
	})
}

// TestSupervisor_RetentionListingShort: a single-tar backup an earlier
// run listed and the storage now leaves out of every listing (it has no
// chunk folder, so only the daemon's memory of it says it exists) makes
// the daemon's retention fail: the error is logged, recorded in the
// status and counted in hoard_retention_runs_total{result="failure"}, and
// nothing is deleted. Before, the run deleted the WAL from its start.
func TestSupervisor_RetentionListingShort(t *testing.T) {
	ctx := context.Background()
	a, put := memSite(t)
	const hidden = "2024-05-01_0"
	for i, b := range []struct{ name, start string }{{hidden, "000000010000000000000002"}, {"2024-05-02_0", "000000010000000000000004"}} {
		info := &archive.BackupInfo{StartTime: time.Now().Add(time.Duration(i-2) * time.Hour), StartWALSegment: b.start}
		put(a.Layout.BackupKey(b.name), info.ToMetadata())
	}
	segments := []string{"000000010000000000000002", "000000010000000000000003", "000000010000000000000004"}
	for _, seg := range segments {
		put(a.Layout.WALKey(seg), nil)
	}
	s, logged := retentionSupervisor(t, archive.RetentionPolicy{MaxCount: 2})
	s.retention(ctx, a)
	if s.st.LastRetentionError != "" {
		t.Fatalf("first run: %s", s.st.LastRetentionError)
	}
	short := *a
	short.Store = listingHides{Store: a.Store, key: a.Layout.BackupKey(hidden)}
	s.retention(ctx, &short)
	for _, seg := range segments {
		if _, err := a.Store.Stat(ctx, a.Layout.WALKey(seg)); err != nil {
			t.Errorf("WAL %s of backup %s, which the listing left out: %v", seg, hidden, err)
		}
	}
	if !strings.Contains(s.st.LastRetentionError, hidden) {
		t.Errorf("last_retention_error %q does not name backup %s", s.st.LastRetentionError, hidden)
	}
	lines := linesWith(logged.String(), hidden)
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"error"`) {
		t.Errorf("log lines naming %s: %q, want one error; log:\n%s", hidden, lines, logged.String())
	}
	if got, want := s.d.metrics.Counter(MetricRetentionRuns, "", map[string]string{"site": "main", "result": "failure"}).Value(), 1.0; got != want {
		t.Errorf("failed runs counted %v, want %v", got, want)
	}
	if got, want := s.d.metrics.Counter(MetricRetentionRuns, "", map[string]string{"site": "main", "result": "success"}).Value(), 1.0; got != want {
		t.Errorf("successful runs counted %v, want %v", got, want)
	}
}

// TestSupervisor_RetentionRefused: a site whose retention is refused
// (Site.RetentionRefused: another site of the configuration stores its
// objects among the site's own) deletes nothing at any run, and says why:
// logged as an error, in last_retention_error, counted as a failed run.
func TestSupervisor_RetentionRefused(t *testing.T) {
	ctx := context.Background()
	a, put := memSite(t)
	for i, b := range []struct{ name, start string }{{"2024-05-01_0", "000000010000000000000002"}, {"2024-05-02_0", "000000010000000000000004"}} {
		info := &archive.BackupInfo{StartTime: time.Now().Add(time.Duration(i-2) * time.Hour), StartWALSegment: b.start}
		put(a.Layout.BackupKey(b.name), info.ToMetadata())
	}
	put(a.Layout.WALKey("000000010000000000000002"), nil)
	s, logged := retentionSupervisor(t, archive.RetentionPolicy{MaxCount: 1})
	const why = "site t's keys lie inside the basebackup_chunk/ folder of site main"
	s.site.RetentionRefused = errors.New(why)
	s.retention(ctx, a)
	for _, k := range []string{a.Layout.BackupKey("2024-05-01_0"), a.Layout.WALKey("000000010000000000000002")} {
		if _, err := a.Store.Stat(ctx, k); err != nil {
			t.Errorf("%s after a refused retention: %v", k, err)
		}
	}
	if !strings.Contains(s.st.LastRetentionError, why) {
		t.Errorf("last_retention_error %q does not say %q", s.st.LastRetentionError, why)
	}
	if lines := linesWith(logged.String(), why); len(lines) != 1 || !strings.Contains(lines[0], `"level":"error"`) {
		t.Errorf("log lines %q, want one error saying why; log:\n%s", lines, logged.String())
	}
}
