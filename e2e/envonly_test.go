package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
)

// TestDaemonEnvOnly runs hoard as a container sidecar would: no
// configuration file at all, every setting from HOARD_* variables (the
// S3 secret from a *_FILE), the connection from libpq's PG* variables.
// The daemon streams WAL from a real cluster into a real S3 server
// (MinIO) and takes its first basebackup; then `hoard list` and
// `hoard restore`, configured the same way, restore it, and the restored
// cluster holds a row written after the backup.
func TestDaemonEnvOnly(t *testing.T) {
	major := pgtest.Versions()[0]
	src := pgtest.Start(t, pgtest.Options{Major: major})
	s3 := storetest.MinIO(t)
	dir := pgtest.TempDir(t)
	secret := filepath.Join(dir, "s3-secret")
	if err := os.WriteFile(secret, []byte(s3.SecretAccessKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, secret)

	s := &streamSite{
		site:     &site{t: t, name: "sidecar", dir: dir},
		httpPort: testio.FreePort(t),
	}
	s.use(src)
	s.env = append(s.env,
		"HOARD_SITE=sidecar",
		"HOARD_BACKUP_LOCATION="+filepath.Join(dir, "state"),
		"HOARD_ACTIVE_BACKUP_MODE=pg_receivexlog",
		"HOARD_HTTP_PORT="+strconv.Itoa(s.httpPort),
		"HOARD_COMPRESSION_ALGORITHM=zstd",
		"HOARD_STORAGE_TYPE=s3",
		"HOARD_S3_HOST="+s3.Host,
		"HOARD_S3_PORT="+strconv.Itoa(s3.Port),
		"HOARD_S3_IS_SECURE=false",
		"HOARD_S3_REGION=us-east-1",
		"HOARD_S3_BUCKET_NAME="+s3.BucketName,
		"HOARD_S3_ACCESS_KEY_ID="+s3.AccessKeyID,
		"HOARD_S3_SECRET_ACCESS_KEY_FILE="+secret,
	)
	d := s.startDaemon()
	d.waitFor("first basebackup", 3*time.Minute, func() bool {
		st, ok := d.status()
		site := st.Sites["sidecar"]
		return ok && site.LastBackup != nil && !site.BackupRunning
	})

	src.Exec(t, "create table after_backup (v text)")
	src.Exec(t, "insert into after_backup values ('streamed')")
	seg := src.SwitchWAL(t)
	d.waitFor("segment "+seg+" stored", 2*time.Minute, func() bool {
		out, _, err := s.hoard("object", "ls", "sidecar/xlog/"+seg)
		return err == nil && strings.Contains(out, seg)
	})
	if code := d.stop(15, time.Minute); code != 0 { // SIGTERM
		t.Errorf("daemon exit status %d after SIGTERM, want 0", code)
	}

	if bs := s.listBackups(); len(bs) != 1 {
		t.Fatalf("hoard list (env only): %d backups, want 1", len(bs))
	}
	// PostgreSQL runs restore_command in its own environment, which the
	// harness keeps free of HOARD_* variables: give it the sidecar's
	// environment through a wrapper, as a container's entrypoint would.
	wrapper := filepath.Join(dir, "wal-fetch.sh")
	var script strings.Builder
	script.WriteString("#!/bin/sh\n")
	for _, kv := range s.env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&script, "export %s='%s'\n", k, v)
	}
	fmt.Fprintf(&script, "exec '%s' wal-fetch \"$@\"\n", hoardBin)
	if err := os.WriteFile(wrapper, []byte(script.String()), 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, wrapper)
	target := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", target, "--archive-mode", "off", "--restore-command", wrapper+" %f %p")
	c := pgtest.StartDataDir(t, major, target, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := c.QueryString(t, "select v from after_backup"); got != "streamed" {
		t.Errorf("restored after_backup = %q, want the row written after the backup", got)
	}
}
