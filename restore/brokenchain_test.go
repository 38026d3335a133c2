package restore

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_IncrementalBrokenChainFallback takes a full backup of a real
// PostgreSQL 17, then an incremental on it and a second on the first, and
// breaks the chain of the newest: first the middle backup's metadata is
// damaged, then its object is gone. Chosen automatically, the restore
// passes the newest backup over with a warning naming it and its parent,
// and restores the full backup, whose recovery replays all archived WAL to
// the source's rows; named with Backup, the newest is refused with
// ErrBrokenChain naming the parent's object.
func TestRun_IncrementalBrokenChainFallback(t *testing.T) {
	const major = 17
	src, walDir, a := incrSource(t, major)
	src.Exec(t, "create table t (id int primary key, v text)")
	src.Exec(t, "insert into t select i, 'first' from generate_series(1, 5000) i")
	ctx := incrContext(t)
	take := func(incremental bool) *archive.BackupInfo {
		t.Helper()
		return takeBackup(ctx, t, src, a, basebackup.ModeStream, incremental)
	}
	full := take(false)
	src.Exec(t, "insert into t select i, 'second' from generate_series(5001, 6000) i")
	inc1 := take(true)
	src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 50 = 0")
	inc2 := take(true)
	if inc1.Parent != full.Name || inc2.Parent != inc1.Name {
		t.Fatalf("parents: %s <- %s (%q) <- %s (%q)", full.Name, inc1.Name, inc1.Parent, inc2.Name, inc2.Parent)
	}
	src.Exec(t, "update t set v = 'after' where id <= 500")
	want := digest(t, src)
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	restore := func(name string) (*Result, string, string, error) {
		t.Helper()
		var logs bytes.Buffer
		dir := filepath.Join(pgtest.TempDir(t), "data")
		res, err := Run(ctx, Options{Archive: a, TargetDir: dir, Backup: name, RestoreCommand: "cp " + walDir + "/%f %p",
			Logger: zerolog.New(&logs).Level(zerolog.WarnLevel)})
		return res, dir, logs.String(), err
	}
	checkFallback := func(what string, res *Result, logs string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: automatic restore: %v", what, err)
		}
		if res.Backup.Name != full.Name {
			t.Errorf("%s: restored %s, want the full backup %s", what, res.Backup.Name, full.Name)
		}
		if !strings.Contains(logs, `"level":"warn"`) || !strings.Contains(logs, inc2.Name) || !strings.Contains(logs, inc1.Key) {
			t.Errorf("%s: warnings %s lack %s and its parent's object %s", what, logs, inc2.Name, inc1.Key)
		}
	}
	checkRefused := func(what string) {
		t.Helper()
		_, _, _, err := restore(inc2.Name)
		if !errors.Is(err, ErrBrokenChain) || !strings.Contains(err.Error(), inc1.Key) || !strings.Contains(err.Error(), inc2.Name) {
			t.Errorf("%s: restore of %s by name: %v, want ErrBrokenChain naming it and %s", what, inc2.Name, err, inc1.Key)
		}
	}

	// The middle backup's metadata damaged (its start time no time).
	rc, obj, err := a.Store.Open(ctx, inc1.Key)
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	_, err = body.ReadFrom(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	md := storage.Metadata{}
	for k, v := range obj.Metadata {
		md[k] = v
	}
	md[archive.MetaStartTime] = "not a time"
	if err := a.Store.Put(ctx, inc1.Key, bytes.NewReader(body.Bytes()), md); err != nil {
		t.Fatal(err)
	}
	res, dir, logs, err := restore("")
	checkFallback("parent's metadata damaged", res, logs, err)
	c := pgtest.StartDataDir(t, major, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	checkRestored(t, c, want)
	c.Stop(t)
	checkRefused("parent's metadata damaged")

	// The middle backup gone.
	if err := a.Store.Delete(ctx, inc1.Key); err != nil {
		t.Fatal(err)
	}
	res, _, logs, err = restore("latest")
	checkFallback("parent missing", res, logs, err)
	checkRefused("parent missing")
}

// TestRun_IncrementalForeignParent takes a full backup of a real
// PostgreSQL 17 and an incremental one on it, then makes the full
// backup's control object record another system (as a backup of another
// cluster with the same start, swapped in under its name, would) and
// sets the system identifier of its metadata, which is not authenticated,
// to that system. Restoring the incremental backup by name must refuse
// the chain, naming the parent's object: the child's control object
// records the real system. (The child's metadata rewritten to that system
// too is refused before the chain is read: it is not its control
// object's, archive.CheckControl.)
func TestRun_IncrementalForeignParent(t *testing.T) {
	src, walDir, a := incrSource(t, 17)
	ctx := incrContext(t)
	full, inc := fullAndIncremental(ctx, t, src, a)
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	archivetest.ForeignSystem(t, a, full, otherSystemID(full.SystemID))
	wantBrokenChain(ctx, t, a, inc, walDir, full.Key, "on a parent of another system")
}

// TestRun_IncrementalParentSwapped: someone who can write the bucket
// copies the control object of a later full backup of the same cluster
// and timeline (an authentic one, with its metadata) over the parent of an
// incremental backup. The child's control object records the parent's
// start LSN and timeline besides its name: restoring the child refuses the
// chain, naming the parent's object. (A backup of the same system starting
// at the very same LSN and timeline, two backups of a standby between
// restartpoints, would pass: PostgreSQL's pg_combinebackup takes it as
// the same base, and the combined files are consistent from that start.)
func TestRun_IncrementalParentSwapped(t *testing.T) {
	src, walDir, a := incrSource(t, 17)
	ctx := incrContext(t)
	full, inc := fullAndIncremental(ctx, t, src, a)
	later := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	archivetest.StoreArchivedWAL(t, src, walDir, a)
	archivetest.CopyObject(t, a.Store, later.Key, full.Key)
	wantBrokenChain(ctx, t, a, inc, walDir, full.Key, "on "+later.Name+"'s control object copied over its parent")
}

// wantBrokenChain restores inc by name, its WAL copied from walDir, and
// fails the test unless restore refuses the chain with ErrBrokenChain
// naming parentKey; what says how the chain was broken.
func wantBrokenChain(ctx context.Context, t *testing.T, a *archive.Archive, inc *archive.BackupInfo, walDir, parentKey, what string) {
	t.Helper()
	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, err := Run(ctx, Options{Archive: a, TargetDir: dir, Backup: inc.Name, RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
	if !errors.Is(err, ErrBrokenChain) || !strings.Contains(err.Error(), parentKey) {
		t.Fatalf("restore of %s %s: %v, want ErrBrokenChain naming %s", inc.Name, what, err, parentKey)
	}
}

// otherSystemID returns a system identifier as long as id and not id.
func otherSystemID(id string) string {
	last := byte('1')
	if id[len(id)-1] == '1' {
		last = '2'
	}
	return id[:len(id)-1] + string(last)
}
