package replication

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

func TestBaseBackupOptions_command(t *testing.T) {
	all := BaseBackupOptions{Label: "it's", Fast: true, MaxRate: 1024, Manifest: true, ManifestChecksums: "SHA256",
		Progress: true, NoWait: true, TablespaceMap: true}
	tests := []struct {
		name    string
		opts    BaseBackupOptions
		version int
		want    string
	}{
		{"OldAll", all, 140005,
			`BASE_BACKUP LABEL 'it''s' PROGRESS FAST NOWAIT MAX_RATE 1024 TABLESPACE_MAP MANIFEST 'yes' MANIFEST_CHECKSUMS 'SHA256'`},
		{"OldMinimal", BaseBackupOptions{Label: "x"}, 130000, `BASE_BACKUP LABEL 'x'`},
		{"NewAll", all, 150000,
			`BASE_BACKUP (LABEL 'it''s', PROGRESS, CHECKPOINT 'fast', WAIT false, MAX_RATE 1024, TABLESPACE_MAP, MANIFEST 'yes', MANIFEST_CHECKSUMS 'SHA256')`},
		{"NewMinimal", BaseBackupOptions{Label: `a\b`}, 180001, `BASE_BACKUP (LABEL 'a\b', CHECKPOINT 'spread')`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.opts.command(tt.version); got != tt.want {
				t.Errorf("command(%d)\n got %s\nwant %s", tt.version, got, tt.want)
			}
		})
	}
}

// takeBackup runs a whole base backup into dir: each tablespace archive
// extracted (tablespaces into their own directories, linked from
// pg_tblspc), the manifest written to backup_manifest. It returns the
// backup and its end position.
func takeBackup(t *testing.T, conn *Conn, opts BaseBackupOptions, dir string) (*BaseBackup, []Archive, string, int32) {
	t.Helper()
	ctx := testContext(t)
	bb, err := conn.StartBaseBackup(ctx, opts)
	if err != nil {
		t.Fatalf("StartBaseBackup: %v", err)
	}
	links := map[string]string{}
	for _, ts := range bb.Tablespaces {
		if ts.OID != 0 {
			links["pg_tblspc/"+strconv.FormatUint(uint64(ts.OID), 10)] = filepath.Join(dir+".tblspc", strconv.FormatUint(uint64(ts.OID), 10))
		}
	}
	var archives []Archive
	for {
		a, err := bb.NextArchive(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("NextArchive: %v", err)
		}
		archives = append(archives, a)
		switch a.Kind {
		case ArchiveTablespace:
			target := dir
			if a.Tablespace.OID != 0 {
				target = links["pg_tblspc/"+strconv.FormatUint(uint64(a.Tablespace.OID), 10)]
			}
			extractTar(t, bb, target, links)
		case ArchiveManifest:
			b, err := io.ReadAll(bb)
			if err != nil {
				t.Fatalf("read manifest: %v", err)
			}
			if err := os.WriteFile(filepath.Join(dir, "backup_manifest"), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// With TABLESPACE_MAP the links are not in the tar but described in
	// tablespace_map: make them, as a restore does.
	for name, target := range links {
		if _, err := os.Lstat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	end, tli, err := bb.Finish(ctx)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if end < bb.StartLSN || tli != bb.Timeline {
		t.Errorf("backup from %s tli %d ends at %s tli %d", bb.StartLSN, bb.Timeline, end, tli)
	}
	return bb, archives, end.String(), tli
}

func TestConn_StartBaseBackup(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major})
		tsDir := pgtest.TempDir(t)
		c.Exec(t, "create tablespace extra location '"+tsDir+"'")
		c.Exec(t, "create table in_extra tablespace extra as select generate_series(1, 10000) as i")
		c.Exec(t, "create table in_base as select generate_series(1, 10000) as i")
		conn := connect(t, c)

		dir := filepath.Join(t.TempDir(), "backup")
		bb, archives, end, tli := takeBackup(t, conn, BaseBackupOptions{
			Label: "hoard test", Fast: true, Manifest: true, ManifestChecksums: "CRC32C",
			Progress: true, NoWait: true, TablespaceMap: true,
		}, dir)

		var kinds []string
		for _, a := range archives {
			kinds = append(kinds, a.Name)
		}
		if len(archives) != 3 || archives[0].Kind != ArchiveTablespace || archives[0].Tablespace.OID == 0 ||
			archives[0].Tablespace.Location != tsDir || archives[1].Name != "base.tar" ||
			archives[2].Kind != ArchiveManifest {
			t.Fatalf("archives %v, want <oid>.tar, base.tar, backup_manifest", kinds)
		}
		if got, want := len(bb.Tablespaces), 2; got != want {
			t.Fatalf("%d tablespaces, want %d", got, want)
		}
		done, total := bb.Progress()
		if total <= 0 || done <= 0 {
			t.Errorf("Progress() = %d, %d; want both positive", done, total)
		}
		if major >= 15 && bb.ServerProgress() != done {
			t.Errorf("ServerProgress() = %d, received %d", bb.ServerProgress(), done)
		}
		// The archives came through the framer, straight from the
		// socket (the manifest too, beyond done), and it passes reads
		// through again.
		manifest, err := os.Stat(filepath.Join(dir, "backup_manifest"))
		if err != nil {
			t.Fatal(err)
		}
		if fr := conn.framer; fr == nil {
			t.Error("no framer under pgx")
		} else if fr.direct != done+manifest.Size() || fr.framing {
			t.Errorf("framer read %d bytes directly, framing %v; want %d, not framing", fr.direct, fr.framing, done+manifest.Size())
		}

		for _, f := range []string{"PG_VERSION", "global/pg_control", "backup_label", "tablespace_map"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("backup lacks %s: %v", f, err)
			}
		}
		v, err := os.ReadFile(filepath.Join(dir, "PG_VERSION"))
		if err != nil || string(v) != strconv.Itoa(major)+"\n" {
			t.Errorf("PG_VERSION = %q, %v", v, err)
		}
		endLSN, _ := parseLSN(t, end)
		checkManifest(t, dir, bb.StartLSN, endLSN, tli)

		if major == pgtest.DebianMajor {
			// The independent oracle: PostgreSQL's own verifier, same
			// major. --no-parse-wal: the WAL is not part of the backup.
			out, err := exec.Command(pgtest.Tool(t, "pg_verifybackup"), "--no-parse-wal", dir).CombinedOutput()
			if err != nil {
				t.Fatalf("pg_verifybackup: %v\n%s", err, out)
			}
		}

		// The connection is ready for more commands.
		if _, err := conn.IdentifySystem(testContext(t)); err != nil {
			t.Errorf("IdentifySystem after the backup: %v", err)
		}
	})
}

func TestConn_StartBaseBackup_Spread(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major})
		// A spread checkpoint paces its writes: start with few dirty
		// buffers so it ends quickly.
		c.Exec(t, "checkpoint")
		conn := connect(t, c)
		dir := filepath.Join(t.TempDir(), "backup")
		bb, archives, _, _ := takeBackup(t, conn, BaseBackupOptions{Label: "spread", MaxRate: 1048576}, dir)
		if len(archives) != 1 || archives[0].Name != "base.tar" {
			t.Fatalf("archives %+v, want base.tar only", archives)
		}
		if _, total := bb.Progress(); total != -1 {
			t.Errorf("total = %d without PROGRESS, want -1", total)
		}
		if _, err := os.Stat(filepath.Join(dir, "global", "pg_control")); err != nil {
			t.Error(err)
		}
	})
}

func TestBaseBackup_Read_ErrCanceled(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major})
		conn := connect(t, c)
		ctx, cancel := context.WithCancel(testContext(t))
		defer cancel()
		// 32 kB/s, the lowest MAX_RATE: the backup is still running when
		// we cancel.
		bb, err := conn.StartBaseBackup(ctx, BaseBackupOptions{Label: "cancel", Fast: true, MaxRate: 32})
		if err != nil {
			t.Fatalf("StartBaseBackup: %v", err)
		}
		if _, err := bb.NextArchive(ctx); err != nil {
			t.Fatalf("NextArchive: %v", err)
		}
		buf := make([]byte, 4096)
		if _, err := io.ReadFull(bb, buf); err != nil {
			t.Fatalf("Read: %v", err)
		}
		cancel()
		_, err = io.Copy(io.Discard, bb)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Read after cancel: %v, want context.Canceled", err)
		}
		if _, _, err := bb.Finish(testContext(t)); err == nil {
			t.Error("Finish after cancel: nil error")
		}
		<-conn.PgConn().CleanupDone()
		if !conn.PgConn().IsClosed() {
			t.Error("connection still open after cancel")
		}

		// The server dropped the backup: a new one runs to the end.
		conn2 := connect(t, c)
		takeBackup(t, conn2, BaseBackupOptions{Label: "after cancel", Fast: true}, filepath.Join(t.TempDir(), "b"))
	})
}

func TestConn_StartBaseBackup_ErrServer(t *testing.T) {
	major := pgtest.Versions()[0]
	c := pgtest.Start(t, pgtest.Options{Major: major})
	conn := connect(t, c)
	_, err := conn.StartBaseBackup(testContext(t), BaseBackupOptions{Label: "bad", MaxRate: 1})
	if err == nil {
		t.Fatal("MAX_RATE 1 accepted")
	}
	// A server error leaves the connection usable.
	if _, err := conn.IdentifySystem(testContext(t)); err != nil {
		t.Errorf("IdentifySystem after the error: %v", err)
	}
	if conn.PgConn().IsClosed() {
		t.Error("connection closed after a server error")
	}
}
