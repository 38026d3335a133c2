package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// copyResult is the part of `hoard archive-copy --json` the test reads.
type copyResult struct {
	Objects   int      `json:"objects"`
	Copied    int      `json:"copied"`
	Skipped   int      `json:"skipped"`
	Decoded   int      `json:"decoded"`
	HashOnly  int      `json:"checked_by_hash_only"`
	Conflicts []string `json:"conflicts"`
	Failed    []any    `json:"failed"`
}

// TestArchiveCopy moves an archive across four real backends: a local
// directory to MinIO with a first run killed (SIGKILL) midway and a second
// run that finishes it, then MinIO to OpenStack Swift, then Swift to an
// SFTP server. Restores from Swift and from SFTP then recover the source
// cluster's rows.
func TestArchiveCopy(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true, ChunkSize: 256 << 10})
	minio := storetest.MinIO(t)
	swift := storetest.Swift(t)
	sftp := storetest.SFTP(t).Config
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
	s.use(src)
	pgtest.Pgbench(t, src, "-i", "-s", "2", "-q")
	s.mustHoard("basebackup", "--fast")
	src.Exec(t, "create table t (id int primary key, v text)")
	src.Exec(t, "insert into t select g, md5(g::text) from generate_series(1, 5000) g")
	switchAndWaitArchived(t, src)
	const rows = "select (select count(*) || ':' || sum(abalance) from pgbench_accounts) || '/' || (select count(*) || ':' || md5(string_agg(v, ',' order by id)) from t)"
	want := src.QueryString(t, rows)

	toMinIO := s.storageConfig(t, "minio.json", storetest.ObjectStorage(minio))
	toSwift := s.storageConfig(t, "swift.json", storetest.ObjectStorage(swift))

	// hoard runs as the server's user: it reads copies of the SSH files.
	for _, f := range []*string{&sftp.PrivateKey, &sftp.KnownHostsFile} {
		cp := filepath.Join(s.dir, filepath.Base(*f))
		s.writeFile(cp, readFile(t, *f))
		*f = cp
	}
	toSFTP := s.storageConfig(t, "sftp.json", storetest.ObjectStorage(sftp))

	// The first run, held to 64 KiB/s, is killed once a few objects are in
	// MinIO.
	minioStore, err := storage.Open(context.Background(), minio)
	if err != nil {
		t.Fatal(err)
	}
	defer minioStore.Close()
	cmd := s.command("archive-copy", "--to-config", toMinIO, "--upload-rate-limit", "64K", "--parallel", "1")
	var killedErr bytes.Buffer
	cmd.Stderr = &killedErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stored := 0
	for deadline := time.Now().Add(3 * time.Minute); stored < 3; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("archive-copy stored %d objects in 3 minutes\n%s", stored, killedErr.String())
		}
		stored = countObjects(t, minioStore)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	stored = countObjects(t, minioStore)

	first := s.archiveCopy(t, toMinIO)
	t.Logf("the killed run stored %d objects; the next run skipped %d and copied %d of %d", stored, first.Skipped, first.Copied, first.Objects)
	if first.Copied == 0 {
		t.Fatalf("the killed run had copied everything: %+v", first)
	}
	if first.Skipped < stored || first.Skipped+first.Copied != first.Objects || first.Decoded != first.Copied {
		t.Fatalf("resumed copy: %+v; want the %d objects the killed run stored skipped and the rest copied, every one decoded", first, stored)
	}
	if again := s.archiveCopy(t, toMinIO); again.Skipped != again.Objects || again.Copied != 0 {
		t.Errorf("third run: %+v, want every object skipped", again)
	}

	// MinIO to Swift, with MinIO's configuration as the source.
	viaMinIO := &site{t: t, name: s.name, dir: s.dir, config: toMinIO, env: s.env}
	second := viaMinIO.archiveCopy(t, toSwift)
	if second.Copied != first.Objects || second.Decoded != second.Objects {
		t.Fatalf("MinIO to Swift: %+v; want all %d objects copied and decoded", second, first.Objects)
	}

	// Swift to SFTP, with Swift's configuration as the source.
	viaSwift := &site{t: t, name: s.name, dir: s.dir, config: toSwift, env: s.env}
	third := viaSwift.archiveCopy(t, toSFTP)
	if third.Copied != first.Objects || third.Decoded != third.Objects {
		t.Fatalf("Swift to SFTP: %+v; want all %d objects copied and decoded", third, first.Objects)
	}

	// Restore from Swift, then from SFTP, and compare the rows.
	viaSFTP := &site{t: t, name: s.name, dir: s.dir, config: toSFTP, env: s.env}
	for _, from := range []struct {
		name string
		site *site
	}{{"Swift", viaSwift}, {"SFTP", viaSFTP}} {
		dir := filepath.Join(pgtest.TempDir(t), "data")
		from.site.mustHoard("restore", "--target-dir", dir)
		c := pgtest.StartDataDir(t, major, dir, noArchiving)
		c.WaitRecoveryDone(t, 3*time.Minute)
		if got := c.QueryString(t, rows); got != want {
			t.Errorf("restored from %s: %s, want the source's %s", from.name, got, want)
		}
		c.Stop(t)
	}
}

// storageConfig writes a copy of the site's configuration whose
// object_storage is os, for the server's user, and returns its path.
func (s *site) storageConfig(t *testing.T, name string, os map[string]any) string {
	t.Helper()
	cfg, site := s.readConfig()
	site["object_storage"] = os
	path := filepath.Join(s.dir, name)
	s.writeConfig(path, cfg)
	return path
}

// archiveCopy runs hoard archive-copy --json into the configuration to.
func (s *site) archiveCopy(t *testing.T, to string) copyResult {
	t.Helper()
	out, _, err := s.hoard("archive-copy", "--to-config", to, "--json")
	var r copyResult
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil || err != nil {
		t.Fatalf("archive-copy --json: %v, %v\n%s", err, jerr, out)
	}
	if len(r.Conflicts) != 0 || len(r.Failed) != 0 || r.Objects == 0 {
		t.Fatalf("archive-copy: %+v", r)
	}
	return r
}

func countObjects(t *testing.T, st storage.Store) int {
	t.Helper()
	n := 0
	if err := st.List(context.Background(), "", func(storage.Object) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
