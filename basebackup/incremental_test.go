package basebackup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_IncrementalRefused: an incremental backup is refused, with
// nothing stored, when the server is older than 17, when it does not
// summarize WAL, and when no parent is stored.
func TestRun_IncrementalRefused(t *testing.T) {
	cases := []struct {
		name      string
		major     int
		summarize string
		want      error
		says      string
	}{
		{"PostgreSQL 16", 16, "", ErrIncrementalUnavailable, "PostgreSQL 17 or later"},
		{"summarize_wal off", 17, "off", ErrIncrementalUnavailable, "summarize_wal = on"},
		{"no parent", 18, "on", ErrNoParent, "take a full backup first"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := map[string]string{}
			if c.summarize != "" {
				conf["summarize_wal"] = c.summarize
			}
			cl := pgtest.Start(t, pgtest.Options{Major: c.major, Conf: conf})
			a := localArchive(t)
			_, err := Run(testContext(t), Options{
				ConnString: cl.ConnString("postgres"), Archive: a, Fast: true, NoWait: true,
				Incremental: true, Logger: zerolog.Nop(),
			})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("got %v, want %v saying %q", err, c.want, c.says)
			}
			// None stored is no damage (a first backup, a new timeline).
			if errors.Is(err, ErrBrokenParent) {
				t.Errorf("got %v, wrapping ErrBrokenParent with no parent stored", err)
			}
			n := 0
			if err := a.Store.List(testContext(t), "", func(storage.Object) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%d objects stored", n)
			}
		})
	}
}

// TestRun_IncrementalLocalTarRefused: local-tar cannot take an
// incremental backup.
func TestRun_IncrementalLocalTarRefused(t *testing.T) {
	_, err := Run(testContext(t), Options{Archive: localArchive(t), Mode: ModeLocal, PGData: t.TempDir(), Incremental: true})
	if err == nil || !strings.Contains(err.Error(), "replication protocol") {
		t.Fatalf("got %v", err)
	}
}

// TestIncrementalStartError: BASE_BACKUP's refusal of an incremental
// backup that starts before its parent's end is explained, and wraps
// ErrIncrementalUnavailable, only on a standby; other errors, and the
// same one on a primary or for a full backup, pass through unchanged.
func TestIncrementalStartError(t *testing.T) {
	refused := fmt.Errorf("base backup: %w", &pgconn.PgError{Code: "55000",
		Message: "manifest requires WAL from final timeline 1 ending at 0/892AF0, but this backup starts at 0/892A78"})
	other := fmt.Errorf("base backup: %w", &pgconn.PgError{Code: "55000", Message: "something else"})
	parent := &parentBackup{info: &archive.BackupInfo{Name: "b1", EndLSN: 0x892AF0}}
	standby := &run{srv: server{inRecovery: true}}
	primary := &run{}

	got := standby.incrementalStartError(refused, parent)
	if !errors.Is(got, ErrIncrementalUnavailable) || !strings.Contains(got.Error(), "CHECKPOINT on the primary") ||
		!strings.Contains(got.Error(), "b1") || !strings.Contains(got.Error(), "but this backup starts at") {
		t.Errorf("standby, refused: %v", got)
	}
	for _, c := range []struct {
		name   string
		r      *run
		err    error
		parent *parentBackup
	}{
		{"primary", primary, refused, parent},
		{"full backup", standby, refused, nil},
		{"other error", standby, other, parent},
	} {
		if got := c.r.incrementalStartError(c.err, c.parent); got != c.err {
			t.Errorf("%s: %v, want the error unchanged", c.name, got)
		}
	}
}

// streamBackup changes some rows of cl's pgbench_accounts, so that each
// backup has changes to carry, then takes a streamed basebackup of cl
// into a, incremental or full: fast checkpoint, 1 MiB chunks, not waiting
// for its WAL to be archived.
func streamBackup(ctx context.Context, t testing.TB, cl *pgtest.Cluster, a *archive.Archive, incremental bool) (*archive.BackupInfo, error) {
	t.Helper()
	cl.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 50 = 0")
	return Run(ctx, Options{
		ConnString: cl.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20,
		Mode: ModeStream, Incremental: incremental, Logger: zerolog.Nop(),
	})
}

// TestRun_IncrementalBrokenParent: an incremental backup of a real
// PostgreSQL 18 (summarize_wal on, local storage) is not taken on a
// parent that cannot be restored. It fails wrapping ErrNoParent, naming
// the parent and the backup of its chain at fault, and stores no backup
// (the daemon then takes a full one):
//
//   - ChunkMissing: a chunk of the parent P is gone (a storage that lost
//     it, or someone who can write the bucket);
//   - ChainChunkMissing: a chunk of P's own parent F is gone, P an
//     incremental backup of F;
//   - ControlSwapped: P's control object is replaced by the one of an
//     older backup Y, P's metadata kept (someone who can write the bucket
//     but holds no key): it decodes, but it is not P's.
//
// Before, findParent only read the listing's metadata and the parent's
// backup_manifest: each incremental backup was taken and stored on the
// broken parent, restorable by nothing, until the next full one.
func TestRun_IncrementalBrokenParent(t *testing.T) {
	cl := pgtest.Start(t, pgtest.Options{Major: 18, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, cl, "-i", "-s", "1")
	ctx := testContext(t)
	full := func(t *testing.T, a *archive.Archive, incremental bool) *archive.BackupInfo {
		t.Helper()
		b, err := streamBackup(ctx, t, cl, a, incremental)
		if err != nil {
			t.Fatalf("basebackup (incremental %v): %v", incremental, err)
		}
		return b
	}
	deleteChunk := func(t *testing.T, a *archive.Archive, b *archive.BackupInfo) string {
		t.Helper()
		var chunks []string
		err := a.Store.List(ctx, a.Layout.Dir(archive.BasebackupChunkDir)+b.Name+"/", func(o storage.Object) error {
			chunks = append(chunks, o.Key)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) < 2 {
			t.Fatalf("backup %s has %d chunks, want several", b.Name, len(chunks))
		}
		if err := a.Store.Delete(ctx, chunks[0]); err != nil {
			t.Fatal(err)
		}
		return chunks[0]
	}
	// refused checks that an incremental backup on p fails naming p and
	// what says, and that the archive lists only the backups it did.
	refused := func(t *testing.T, a *archive.Archive, p *archive.BackupInfo, says string) {
		t.Helper()
		before, err := a.ListBackups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		inc, err := streamBackup(ctx, t, cl, a, true)
		if err == nil {
			t.Fatalf("incremental backup %s stored on parent %s (parent %q), which cannot be restored", inc.Name, p.Name, inc.Parent)
		}
		if !errors.Is(err, ErrNoParent) || !errors.Is(err, ErrBrokenParent) || !strings.Contains(err.Error(), p.Name) || !strings.Contains(err.Error(), says) {
			t.Fatalf("got %v, want ErrNoParent and ErrBrokenParent naming %s and saying %q", err, p.Name, says)
		}
		after, err := a.ListBackups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) {
			t.Errorf("%d backups listed after the refused one, want %d", len(after), len(before))
		}
	}

	t.Run("ChunkMissing", func(t *testing.T) {
		a := localArchive(t)
		p := full(t, a, false)
		key := deleteChunk(t, a, p)
		refused(t, a, p, key+" is missing")
	})
	t.Run("ChainChunkMissing", func(t *testing.T) {
		a := localArchive(t)
		f := full(t, a, false)
		p := full(t, a, true)
		if p.Parent != f.Name {
			t.Fatalf("incremental backup's parent %q, want %s", p.Parent, f.Name)
		}
		key := deleteChunk(t, a, f)
		refused(t, a, f, key+" is missing")
	})
	t.Run("ControlSwapped", func(t *testing.T) {
		a := localArchive(t)
		y := full(t, a, false)
		p := full(t, a, false)
		rc, _, err := a.Store.Open(ctx, y.Key)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		o, err := a.Store.Stat(ctx, p.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Store.Put(ctx, p.Key, rc, o.Metadata); err != nil {
			t.Fatal(err)
		}
		refused(t, a, p, "another backup's control object")
	})
}

// TestRun_IncrementalParentControlReadOnce: an incremental backup of a
// real PostgreSQL 18 (summarize_wal on, local storage) reads its parent
// P's control object once: what findParent checks (checkChain:
// CheckControl, the chunks) is the backup_manifest it sends with
// UPLOAD_MANIFEST.
//
//   - Count: P's control object is opened once.
//   - Swapped: from its second open on, P's control object is the one of
//     an older backup Y (someone who can write the bucket but holds no
//     key copies it under P's name between two reads): the incremental
//     backup is still taken from P's start (its backup_label's
//     INCREMENTAL FROM LSN, its manifest's parent start), never from Y's.
//
// Before, findParent read P's control object a second time
// (ReadControlMember), after checkChain, unchecked: given Y's there, the
// backup was taken against Y's backup_manifest and recorded P as its
// parent, a chain restore refuses.
func TestRun_IncrementalParentControlReadOnce(t *testing.T) {
	cl := pgtest.Start(t, pgtest.Options{Major: 18, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, cl, "-i", "-s", "1")
	ctx := testContext(t)
	backup := func(t *testing.T, a *archive.Archive, incremental bool) *archive.BackupInfo {
		t.Helper()
		b, err := streamBackup(ctx, t, cl, a, incremental)
		if err != nil {
			t.Fatalf("basebackup (incremental %v): %v", incremental, err)
		}
		return b
	}
	// fromParent checks that incremental backup inc was taken from p's
	// start.
	fromParent := func(t *testing.T, a *archive.Archive, inc, p *archive.BackupInfo) {
		t.Helper()
		if inc.Parent != p.Name {
			t.Fatalf("incremental backup's parent %q, want %s", inc.Parent, p.Name)
		}
		c, err := a.ReadControl(ctx, inc.Key, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := "INCREMENTAL FROM LSN: " + p.StartLSN.String() + "\n"; !strings.Contains(string(c.Label), want) {
			t.Errorf("incremental backup's backup_label:\n%s\nwant %q (its parent %s's start)", c.Label, want, p.Name)
		}
		if h := c.Manifest.Hoard; h == nil || h.Incremental == nil || h.Incremental.StartLSN != p.StartLSN.String() {
			t.Errorf("incremental backup's manifest records its parent as %+v, want %s starting at %s", h.Incremental, p.Name, p.StartLSN)
		}
	}

	t.Run("Count", func(t *testing.T) {
		a := localArchive(t)
		backup(t, a, false)
		p := backup(t, a, false)
		log := &storetest.OpenLog{Store: a.Store, Match: func(key string) bool { return key == p.Key }}
		a.Store = log
		inc := backup(t, a, true)
		if got, want := log.Count(p.Key), 1; got != want {
			t.Errorf("parent %s's control object opened %d times, want %d", p.Name, got, want)
		}
		a.Store = log.Store
		fromParent(t, a, inc, p)
	})
	t.Run("Swapped", func(t *testing.T) {
		a := localArchive(t)
		y := backup(t, a, false)
		p := backup(t, a, false)
		st := a.Store
		a.Store = &storetest.SwapOpen{Store: st, Key: p.Key, Other: y.Key, At: 2}
		inc := backup(t, a, true)
		a.Store = st
		fromParent(t, a, inc, p)
	})
}

// unreachableStore is a Store whose every read (Stat, Open, OpenRange, List)
// fails with err: a storage that is unreachable, or that refuses, for
// longer than the retries last.
type unreachableStore struct {
	storage.Store
	err error
}

func (s unreachableStore) Stat(context.Context, string) (storage.Object, error) {
	return storage.Object{}, s.err
}

func (s unreachableStore) Open(context.Context, string) (io.ReadCloser, storage.Object, error) {
	return nil, storage.Object{}, s.err
}

func (s unreachableStore) OpenRange(context.Context, string, int64, int64) (io.ReadCloser, error) {
	return nil, s.err
}

func (s unreachableStore) List(context.Context, string, func(storage.Object) error) error {
	return s.err
}

// TestCheckChain_StorageError: a storage that fails while the chain of
// the parent P is checked (P's control object read, or a backup F of its
// chain checked) fails the incremental backup with the storage's error,
// naming P. It wraps neither ErrBrokenParent nor ErrNoParent: nothing
// was found damaged, so the daemon does not count a broken parent (and
// raise HoardIncrementalBrokenParent) nor take a full backup in its
// place, which the same storage would most likely fail too; the backup
// fails and is tried again. A backup the storage answers "not found" for
// is damage: it still wraps both (StillMissing).
//
// Before, every error of the check was taken for a broken chain.
func TestCheckChain_StorageError(t *testing.T) {
	ctx := testContext(t)
	f := &archive.BackupInfo{Name: "2026-12-05_04-00_0", Format: archive.FormatBBv2}
	p := &archive.BackupInfo{Name: "2026-12-05_05-00_0", Format: archive.FormatBBv2, Parent: f.Name}
	unavailable := errors.New("operation error S3: HeadObject, exceeded maximum number of attempts, 10, https response error StatusCode: 503, SlowDown")
	denied := fmt.Errorf("access denied to s3 bucket %q: check the credentials: %w", "b", storage.ErrPermanent)
	for _, c := range []struct {
		name  string
		err   error
		chain []*archive.BackupInfo
	}{
		{"ParentUnavailable", unavailable, []*archive.BackupInfo{p}},
		{"ChainUnavailable", unavailable, []*archive.BackupInfo{f, p}},
		{"ParentAccessDenied", denied, []*archive.BackupInfo{p}},
		{"ChainAccessDenied", denied, []*archive.BackupInfo{f, p}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := localArchive(t)
			for _, b := range c.chain {
				b.Key = a.Layout.BackupKey(b.Name)
			}
			a.Store = unreachableStore{Store: a.Store, err: c.err}
			pgm := &archive.ControlMember{Name: archive.ControlPGManifest, Max: archive.MaxPGManifest}
			_, err := checkChain(ctx, a, p, c.chain, pgm)
			if !errors.Is(err, c.err) || !strings.Contains(err.Error(), p.Name) {
				t.Fatalf("got %v, want the storage's error naming parent %s", err, p.Name)
			}
			if errors.Is(err, ErrBrokenParent) || errors.Is(err, ErrNoParent) {
				t.Errorf("got %v: a storage error taken for a broken chain", err)
			}
		})
	}
	t.Run("StillMissing", func(t *testing.T) {
		for _, chain := range [][]*archive.BackupInfo{{p}, {f, p}} {
			a := localArchive(t)
			for _, b := range chain {
				b.Key = a.Layout.BackupKey(b.Name)
			}
			// Not empty: the local store refuses to read an empty
			// directory (an unmounted volume), which is no damage.
			if err := a.Store.Put(ctx, a.Layout.Dir(archive.BasebackupDir)+"other", strings.NewReader("x"), storage.Metadata{}); err != nil {
				t.Fatal(err)
			}
			pgm := &archive.ControlMember{Name: archive.ControlPGManifest, Max: archive.MaxPGManifest}
			_, err := checkChain(ctx, a, p, chain, pgm)
			if !errors.Is(err, ErrBrokenParent) || !errors.Is(err, ErrNoParent) || !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("chain of %d, none stored: got %v, want ErrBrokenParent and ErrNoParent", len(chain), err)
			}
		}
	})
}

// statFails is a Store whose Stat of a key under prefix fails with err.
type statFails struct {
	storage.Store
	prefix string
	err    error
}

func (s statFails) Stat(ctx context.Context, key string) (storage.Object, error) {
	if strings.HasPrefix(key, s.prefix) {
		return storage.Object{}, fmt.Errorf("stat %s: %w", key, s.err)
	}
	return s.Store.Stat(ctx, key)
}

// TestRun_IncrementalParentStorageError: an incremental backup of a real
// PostgreSQL 18 whose parent's chunks the storage fails to answer for
// (HEAD 503 past the retries) fails with the storage's error, naming the
// parent, wrapping neither ErrNoParent nor ErrBrokenParent, and stores
// nothing; once the storage answers, the incremental backup is taken on
// the same parent. Before, the failure read as a broken chain.
func TestRun_IncrementalParentStorageError(t *testing.T) {
	cl := pgtest.Start(t, pgtest.Options{Major: 18, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, cl, "-i", "-s", "1")
	ctx := testContext(t)
	a := localArchive(t)
	p, err := streamBackup(ctx, t, cl, a, false)
	if err != nil {
		t.Fatal(err)
	}
	st := a.Store
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	a.Store = statFails{Store: st, prefix: a.Layout.Dir(archive.BasebackupChunkDir) + p.Name + "/", err: unavailable}
	inc, err := streamBackup(ctx, t, cl, a, true)
	if err == nil {
		t.Fatalf("incremental backup %s stored while its parent's chunks could not be checked", inc.Name)
	}
	if !errors.Is(err, unavailable) || !strings.Contains(err.Error(), p.Name) || errors.Is(err, ErrNoParent) || errors.Is(err, ErrBrokenParent) {
		t.Fatalf("got %v, want the storage's error naming parent %s, neither ErrNoParent nor ErrBrokenParent", err, p.Name)
	}
	a.Store = st
	if bs, err := a.ListBackups(ctx); err != nil || len(bs) != 1 {
		t.Fatalf("listed %d backups (%v) after the failed one, want 1", len(bs), err)
	}
	inc, err = streamBackup(ctx, t, cl, a, true)
	if err != nil {
		t.Fatalf("incremental backup once the storage answers: %v", err)
	}
	if inc.Parent != p.Name {
		t.Errorf("incremental backup's parent %q, want %s", inc.Parent, p.Name)
	}
}
