package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRecoveryRefusesBadArchive restores an encrypted site and starts
// PostgreSQL on it, with hoard wal-fetch as restore_command, after the
// segment holding the last rows was replaced by someone without the key,
// or had a metadata field altered, or its local object file lost its
// data. wal-fetch must stop recovery
// (exit 255, PostgreSQL shuts down with an error), not serve the planted
// plaintext, and not answer "not in the archive", which would end recovery
// early and promote a server without those rows.
func TestRecoveryRefusesBadArchive(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	s := newSite(t, siteOptions{Encrypt: true})
	src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
	s.use(src)
	src.Exec(t, "create table t (id int primary key)")
	s.mustHoard("basebackup", "--fast")
	// The backup's WAL is archived; the rows go into later segments, which
	// restore does not need before PostgreSQL starts.
	switchAndWaitArchived(t, src)
	src.Exec(t, "insert into t select generate_series(1, 1000)")
	seg := switchAndWaitArchived(t, src)
	src.Exec(t, "select pg_logical_emit_message(false, 'hoard-e2e', 'more')")
	switchAndWaitArchived(t, src)

	key := s.name + "/xlog/" + seg
	obj := filepath.Join(s.storeDir, filepath.FromSlash(key))
	orig, origMD := readFile(t, obj), readFile(t, obj+".metadata")
	restoreObject := func() { s.writeFile(obj, orig); s.writeFile(obj+".metadata", origMD) }

	// recover restores the backup, then runs damage (restore itself
	// refuses an archive with a listed gap), then starts PostgreSQL.
	recover := func(t *testing.T, damage func()) (*pgtest.Cluster, error) {
		t.Helper()
		dir := filepath.Join(pgtest.TempDir(t), "data")
		s.mustHoard("restore", "--target-dir", dir)
		damage()
		return pgtest.TryStartDataDir(t, major, dir, noArchiving)
	}

	t.Run("OK", func(t *testing.T) {
		c, err := recover(t, func() {})
		if err != nil {
			t.Fatal(err)
		}
		c.WaitRecoveryDone(t, 3*time.Minute)
		if got := c.QueryString(t, "select count(*) from t"); got != "1000" {
			t.Fatalf("restored rows = %s, want 1000", got)
		}
		c.Stop(t)
	})

	t.Run("ErrPlantedPlaintext", func(t *testing.T) {
		defer restoreObject()
		// The genuine segment, stored again without encryption, as a writer
		// without the key would store a segment of their own. object put
		// never replaces an object: the segment is removed first, as such
		// a writer can.
		plain := filepath.Join(s.dir, "plain-"+seg)
		s.mustHoard("object", "get", key, "-o", plain)
		keyless := s.keylessConfig(t)
		_, err := recover(t, func() {
			for _, f := range []string{obj, obj + ".metadata"} {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(hoardBin, "--config", keyless, "object", "put", plain, key)
			cmd.Env = minimalEnv()
			pgtest.RunAs(cmd)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("plant plaintext %s: %v\n%s", key, err, out)
			}
			if md := string(readFile(t, obj+".metadata")); strings.Contains(md, "encryption-key-id") {
				t.Fatalf("planted object is still encrypted: %s", md)
			}
		})
		if err == nil {
			t.Fatalf("PostgreSQL finished recovery through a planted unencrypted segment %s", seg)
		}
		if !strings.Contains(err.Error(), "refused as tampered") || !strings.Contains(err.Error(), seg) {
			t.Errorf("recovery failed, but the log does not show wal-fetch refusing %s:\n%v", seg, err)
		}
	})

	// The genuine segment with one metadata field altered, as a writer
	// without the key can: each field that changes how the bytes are read
	// is checked against them (format.md, "What the metadata can change"),
	// so wal-fetch refuses the segment and recovery stops, where taking
	// the field at its word would mean another decoder, no decryption, a
	// key the site lacks or a cut segment.
	for _, tc := range []struct {
		name string
		edit func(storage.Metadata)
		want string // in wal-fetch's refusal
	}{
		{"KeyIDRemoved", func(md storage.Metadata) { delete(md, archive.MetaEncryptionKeyID) }, "refused as tampered"},
		{"KeyIDUnknown", func(md storage.Metadata) { md[archive.MetaEncryptionKeyID] = "other-key" }, "private key is not in the configuration"},
		{"CompressionChanged", func(md storage.Metadata) { md[archive.MetaCompressionAlgorithm] = "zstd" }, "does not match the compression-algorithm metadata"},
		{"CompressionRemoved", func(md storage.Metadata) { delete(md, archive.MetaCompressionAlgorithm) }, "does not match the compression-algorithm metadata"},
		{"OriginalSizeCut", func(md storage.Metadata) { md[archive.MetaOriginalFileSize] = "8192" }, "decoded more than original-file-size 8192 bytes"},
		{"HashChanged", func(md storage.Metadata) { md[archive.MetaHash] = strings.Repeat("0", len(md[archive.MetaHash])) }, "damaged object"},
	} {
		t.Run("ErrMetadata"+tc.name, func(t *testing.T) {
			defer restoreObject()
			c, err := recover(t, func() {
				storetest.Rewrite(t, storage.NewLocal(s.storeDir), key, func(data []byte, md storage.Metadata) []byte {
					tc.edit(md)
					return data
				})
				pgtest.Chown(t, s.storeDir)
			})
			log := refusedRecovery(t, c, err, func(c *pgtest.Cluster) string { return c.QueryString(t, "select count(*) from t") }, "1000")
			if log == "" {
				t.Fatalf("recovery went through %s with its metadata altered (%s)", seg, tc.name)
			}
			if !strings.Contains(log, "hoard: ") || !strings.Contains(log, seg) || !strings.Contains(log, tc.want) {
				t.Errorf("recovery failed, but the log does not show wal-fetch refusing %s (%q):\n%s", seg, tc.want, log)
			}
		})
	}

	t.Run("ErrObjectFileMissing", func(t *testing.T) {
		defer restoreObject()
		_, err := recover(t, func() {
			if err := os.Remove(obj); err != nil {
				t.Fatal(err)
			}
		})
		if err == nil {
			t.Fatalf("PostgreSQL finished recovery although %s lost its data: wal-fetch said it is not archived", seg)
		}
		if !strings.Contains(err.Error(), "has a metadata sidecar but no object file") {
			t.Errorf("recovery failed, but the log does not show why:\n%v", err)
		}
	})

	// The segment is archived when restore checks the WAL and deleted
	// (or lost, or withheld) before PostgreSQL asks for it: "not in the
	// archive" would end recovery there and promote a server without the
	// rows, so wal-fetch --archived-through must stop recovery instead.
	t.Run("ErrSegmentDeleted", func(t *testing.T) {
		defer restoreObject()
		c, err := recover(t, func() {
			for _, p := range []string{obj, obj + ".metadata"} {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
		})
		if err == nil {
			// pg_ctl may see the server ready for read-only connections
			// before recovery reaches the segment.
			if promoted := waitRecoveryEnd(t, c, 3*time.Minute); promoted {
				t.Fatalf("PostgreSQL promoted with %s rows of 1000: %s was deleted after the restore checked it, and recovery ended there",
					c.QueryString(t, "select count(*) from t"), seg)
			}
			err = errors.New(c.Log())
		}
		want := seg + " was archived when the restore checked the WAL"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("recovery failed, but the log does not say %q:\n%v", want, err)
		}
		if strings.Contains(err.Error(), "database system is ready to accept connections") {
			t.Errorf("PostgreSQL came up as a primary:\n%v", err)
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if strings.Contains(line, want) || strings.Contains(line, "FATAL") {
				t.Log(line)
			}
		}
	})
}

// waitRecoveryEnd waits until c's recovery ends: true when PostgreSQL
// promoted (ready to accept read-write connections), false when the server
// stopped.
func waitRecoveryEnd(t *testing.T, c *pgtest.Cluster, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(c.Log(), "database system is ready to accept connections") {
			return true
		}
		if !c.Running() {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("recovery neither ended nor failed in %v:\n%s", timeout, c.Log())
	return false
}

// refusedRecovery waits for the end of a recovery started with
// pgtest.TryStartDataDir (c, err) and returns the server's log when it
// stopped with an error, logging its FATAL and hoard lines. It fails the
// test when PostgreSQL promoted with rows (read by rows) other than want:
// recovery ended early. It returns "" when it promoted with them.
func refusedRecovery(t *testing.T, c *pgtest.Cluster, err error, rows func(*pgtest.Cluster) string, want string) string {
	t.Helper()
	if err == nil {
		if promoted := waitRecoveryEnd(t, c, 3*time.Minute); promoted {
			if got := rows(c); got != want {
				t.Fatalf("PostgreSQL promoted with rows %q, want %q or a refusal: recovery ended early", got, want)
			}
			return ""
		}
		err = errors.New(c.Log())
	}
	log := err.Error()
	if strings.Contains(log, "database system is ready to accept connections") {
		t.Errorf("PostgreSQL came up as a primary:\n%s", log)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "hoard: ") || strings.Contains(line, "FATAL") {
			t.Log(line)
		}
	}
	return log
}

// keylessConfig writes a copy of the site's configuration without its
// encryption keys: what someone who can write the storage, but holds no
// key, could use.
func (s *site) keylessConfig(t *testing.T) string {
	t.Helper()
	cfg, site := s.readConfig()
	delete(site, "encryption_key_id")
	delete(site, "encryption_keys")
	p := filepath.Join(s.dir, "keyless.json")
	s.writeConfig(p, cfg)
	return p
}
