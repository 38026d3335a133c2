package command

import (
	"bytes"
	"context"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// sysOld is the system identifier the planted history files are bound
// to: the old cluster's, before a pg_upgrade.
const sysOld = "7000000000000000001"

// oldHistories returns a local store's configuration, the key pair of a
// site db there, and its archive holding the old cluster's signed
// 00000002.history and 00000003.history (bound to sysOld): the shape a
// pg_upgrade into the same site leaves when the old cluster had reached
// timeline 3.
func oldHistories(t *testing.T) (storage.Config, *rsa.PrivateKey, *archive.Archive) {
	t.Helper()
	ctx := context.Background()
	k, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	c := storetest.Local(t)
	st, err := storage.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a := &archive.Archive{Store: st, Layout: archive.Layout{Prefix: "db"}, Site: "db", Codec: &archive.Codec{
		KeyID: "k1", PublicKey: &k.PublicKey, PrivateKeys: map[string]*rsa.PrivateKey{"k1": k}, RequireEncryption: true}}
	pushOldHistories(t, a)
	return c, k, a
}

// pushOldHistories pushes the old cluster's 00000002.history and
// 00000003.history into a, for sysOld.
func pushOldHistories(t *testing.T, a *archive.Archive) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"00000002.history", "00000003.history"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("1\t0/5000000\tno recovery target specified\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := a.PushWAL(context.Background(), path, archive.PushOptions{SystemID: 7000000000000000001}); err != nil {
			t.Fatal(err)
		}
	}
}

// keylessHistories returns a site without keys holding the old cluster's
// 00000002.history and 00000003.history, whose metadata claims sysOld,
// or, unless claimed, no system (an older hoard's).
func keylessHistories(t *testing.T, claimed bool) *archive.Archive {
	t.Helper()
	ctx := context.Background()
	a := &archive.Archive{Store: storage.NewMem(), Layout: archive.Layout{Prefix: "db"}, Site: "db", Codec: &archive.Codec{}}
	t.Cleanup(func() { a.Store.Close() })
	pushOldHistories(t, a)
	for _, name := range []string{"00000002.history", "00000003.history"} {
		key := a.Layout.WALKey(name)
		if claimed {
			continue
		}
		b, obj := storetest.Read(t, a.Store, key)
		delete(obj.Metadata, archive.MetaSystemID)
		if err := a.Store.Put(ctx, key, bytes.NewReader(b), obj.Metadata); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// TestCheckOtherHistories: with the old cluster's history files of
// timelines 2 and 3 in the site, a node of another system on timeline 1
// or 2 fails one line naming the files' timelines and system, the node's
// timeline and system, and what to do; on timeline 3, or of the old
// system itself, nothing fails. The same in a site without keys, by the
// system the files' metadata claims (and the line says so); where they
// claim none (an older hoard's), nothing fails and no line says all is
// well (unless none is above the node's timeline): an info line says it
// cannot be told.
func TestCheckOtherHistories(t *testing.T) {
	const sysNew = "7000000000000000002"
	_, _, keyed := oldHistories(t)
	for _, site := range []struct {
		name string
		a    *archive.Archive
	}{{"keys", keyed}, {"keyless", keylessHistories(t, true)}, {"keyless unclaimed", keylessHistories(t, false)}} {
		claim, fix := "", "sharing this key pair"
		if site.name == "keyless" {
			claim, fix = ", by their metadata's claim (not authenticated: this site has no keys)", "another cluster archives into this site"
		}
		env := &siteEnv{archive: site.a}
		for _, c := range []struct {
			id     string
			tli    uint32
			failed int
			want   string
		}{
			{sysNew, 1, 1, "FAILED   postgresql node 0: the site holds timeline history files of database system " + sysOld +
				" on timelines 2, 3, above timeline 1 of this cluster (system " + sysNew + ")" + claim + ": wal-fetch treats them as absent while the site holds no WAL of this cluster"},
			{sysNew, 2, 1, "FAILED   postgresql node 0: the site holds timeline history files of database system " + sysOld +
				" on timeline 3, above timeline 2 of this cluster (system " + sysNew + ")" + claim + ": "},
			{sysNew, 3, 0, "ok       postgresql node 0: no timeline history file of another database system above timeline 3"},
			{sysOld, 1, 0, "ok       postgresql node 0: no timeline history file of another database system above timeline 1"},
		} {
			var out bytes.Buffer
			r := &checkReport{w: &out}
			checkOtherHistories(context.Background(), r, env, nodeStep(0), c.id, c.tli)
			if site.name == "keyless unclaimed" {
				// Files above the node's timeline: no ok line, an info one.
				above := c.tli < 3
				if r.failed != 0 || above == strings.Contains(out.String(), "ok ") || above != strings.Contains(out.String(), "info     postgresql node 0: timeline history files above timeline") {
					t.Errorf("%s: system %s on timeline %d: %d failed, want none, and an info line, not an ok one, below timeline 3:\n%s",
						site.name, c.id, c.tli, r.failed, out.String())
				}
				continue
			}
			if r.failed != c.failed {
				t.Errorf("%s: system %s on timeline %d: %d failed, want %d:\n%s", site.name, c.id, c.tli, r.failed, c.failed, out.String())
			}
			wantLines(t, out.String(), c.want)
			if c.failed > 0 {
				for _, w := range []string{"after pg_upgrade", "backup_sites.<site>.prefix", fix} {
					if !strings.Contains(out.String(), w) {
						t.Errorf("%s: the problem line does not say %q:\n%s", site.name, w, out.String())
					}
				}
			}
		}
	}
}

// TestCheck_OtherSystemHistories: hoard check of a real PostgreSQL 15
// cluster (timeline 1, a system of its own) in a site with keys holding
// another system's history files of timelines 2 and 3 exits 1 with the
// FAILED line, which names the node's system as IDENTIFY_SYSTEM gives it.
func TestCheck_OtherSystemHistories(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true})
	lc, k, _ := oldHistories(t)
	pub, err := crypto.EncodePublicKeyPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := crypto.EncodePrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	site := checkSite(t, lc, "pg_receivexlog", clusterNode(c))
	site["encryption_key_id"] = "k1"
	site["encryption_keys"] = map[string]any{"k1": map[string]any{"public": pub, "private": priv}}
	code, out := runCheckSite(t, site)
	if code != ExitFailure {
		t.Errorf("check: exit %d, want %d", code, ExitFailure)
	}
	wantLines(t, out, "FAILED   postgresql node 0: the site holds timeline history files of database system "+sysOld+
		" on timelines 2, 3, above timeline 1 of this cluster (system ")
	if strings.Contains(out, "(system "+sysOld+")") {
		t.Errorf("the line names the old system as the node's:\n%s", out)
	}
}

// TestCheckOtherHistories_OwnAbove: history files of the node's own system
// on timelines above the one it runs on (a restored copy that kept the
// original's archive_command archived its timeline here, or a former
// primary still runs) make a warning: a restore of the site to its end
// follows that timeline, not this node's WAL. The line names the
// timelines, --archive-mode off and --target-timeline. On the newest
// timeline, or where the files claim no system, no warning.
func TestCheckOtherHistories_OwnAbove(t *testing.T) {
	_, _, keyed := oldHistories(t)
	for _, c := range []struct {
		name     string
		a        *archive.Archive
		tli      uint32
		warnings int
	}{
		{"keys", keyed, 1, 1},
		{"keysNewest", keyed, 3, 0},
		{"keyless", keylessHistories(t, true), 2, 1},
		{"keylessUnclaimed", keylessHistories(t, false), 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			r := &checkReport{w: &out}
			checkOtherHistories(context.Background(), r, &siteEnv{archive: c.a}, nodeStep(0), sysOld, c.tli)
			if r.failed != 0 || r.warnings != c.warnings {
				t.Fatalf("%d failed, %d warnings, want 0 and %d:\n%s", r.failed, r.warnings, c.warnings, out.String())
			}
			if c.warnings == 0 {
				return
			}
			above := map[uint32]string{1: "history files of timelines 2, 3", 2: "history file of timeline 3"}[c.tli]
			wantLines(t, out.String(), "warning  postgresql node 0: the site holds this cluster's "+above+
				", above timeline "+strconv.Itoa(int(c.tli))+", the one this node runs on")
			for _, w := range []string{"--archive-mode off", "--target-timeline " + strconv.Itoa(int(c.tli))} {
				if !strings.Contains(out.String(), w) {
					t.Errorf("the warning does not say %q:\n%s", w, out.String())
				}
			}
		})
	}
}
