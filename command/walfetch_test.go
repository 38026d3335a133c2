package command

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// writeSiteConfig writes a one-site configuration using c and returns its
// path.
func writeSiteConfig(t *testing.T, c storage.Config) string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{
		"backup_location":  filepath.Join(dir, "state"),
		"restore_prefetch": 0,
		"backup_sites": map[string]any{"s": map[string]any{
			"active_backup_mode": "archive_command",
			"object_storage":     storetest.ObjectStorage(c),
		}},
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "hoard.json")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wal-fetch exits 1, which PostgreSQL takes as the end of the archive,
// only when the storage answered that the file does not exist; a missing
// bucket, container or storage directory (local or SFTP), and a local
// object whose sidecar outlived its file, exit 255 on every backend.
func TestWALFetch_ExitCodes(t *testing.T) {
	const name = "000000010000000000000003"
	seg := waltest.Segment(t, name, 1<<20, 3)
	for _, srv := range storetest.Servers {
		t.Run(srv.Name, func(t *testing.T) {
			c := srv.Config(t)
			c.Prefix = "p"
			cfg := writeSiteConfig(t, c)
			walDir := t.TempDir()
			src := filepath.Join(walDir, name)
			if err := os.WriteFile(src, seg, 0o600); err != nil {
				t.Fatal(err)
			}
			if got := run(t, "--config", cfg, "wal-push", src); got != ExitOK {
				t.Fatalf("wal-push: exit %d", got)
			}
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			if got := run(t, "--config", cfg, "wal-fetch", name, dest); got != ExitOK {
				t.Fatalf("wal-fetch of an archived segment: exit %d", got)
			}
			if got := run(t, "--config", cfg, "wal-fetch", "000000010000000000000004", dest); got != exitWALMissing {
				t.Errorf("wal-fetch of a segment not in the archive: exit %d, want %d", got, exitWALMissing)
			}
			if got := run(t, "--config", cfg, "wal-fetch", "00000002.history", dest); got != exitWALMissing {
				t.Errorf("wal-fetch of a history file not in the archive: exit %d, want %d", got, exitWALMissing)
			}
			missing := c
			switch c.Type {
			case "local", "sftp":
				missing.Directory = filepath.Join(t.TempDir(), "unmounted")
			case "swift":
				missing.ContainerName = "no-such-container"
			default:
				missing.BucketName = "no-such-bucket"
			}
			if got := run(t, "--config", writeSiteConfig(t, missing), "wal-fetch", name, dest); got != exitWALFatal {
				t.Errorf("wal-fetch from a missing bucket or directory: exit %d, want %d", got, exitWALFatal)
			}
			if c.Type != "local" && c.Type != "sftp" {
				return
			}
			empty := c
			empty.Directory, empty.Prefix = t.TempDir(), ""
			if got := run(t, "--config", writeSiteConfig(t, empty), "wal-fetch", name, dest); got != exitWALFatal {
				t.Errorf("wal-fetch from an empty storage directory (unmounted volume): exit %d, want %d", got, exitWALFatal)
			}
			if c.Type != "local" {
				return
			}
			if err := os.Remove(filepath.Join(c.Directory, "p", "s", "xlog", name)); err != nil {
				t.Fatal(err)
			}
			if got := run(t, "--config", cfg, "wal-fetch", name, dest); got != exitWALFatal {
				t.Errorf("wal-fetch of an object whose sidecar outlived its file: exit %d, want %d", got, exitWALFatal)
			}
		})
	}
}

// TestWALFetch_SpoolLogLink: a link planted at the prefetch worker's log
// (pg_wal/hoard-prefetch/worker.log, in a restored data directory) is
// replaced, not written through: the file it points at is left alone.
func TestWALFetch_SpoolLogLink(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	store := filepath.Join(root, "store")
	cfg := filepath.Join(root, "hoard.json")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": "s",
		"object_storage": {"storage_type": "local", "directory": %q}}}}`, filepath.Join(root, "state"), store)), 0o600); err != nil {
		t.Fatal(err)
	}
	a := archivetest.Local(t, store, "s", &archive.Codec{})
	a.Site = "s"
	const seg = "000000010000000000000002"
	data := waltest.Segment(t, seg, 16<<20, 1)
	src := filepath.Join(root, seg)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PushWAL(ctx, src, archive.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pgwal := filepath.Join(root, "pg_wal")
	spool := filepath.Join(pgwal, archive.SpoolDirName)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(spool, prefetchWorkerLog)); err != nil {
		t.Fatal(err)
	}
	app := App("test")
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	if err := app.RunContext(ctx, []string{"hoard", "--config", cfg, "wal-fetch", seg, dest}); err != nil {
		t.Fatalf("wal-fetch: %v\n%s", err, errOut.String())
	}
	if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("delivered %d bytes, %v", len(got), err)
	}
	if got, err := os.ReadFile(victim); err != nil || string(got) != "keep\n" {
		t.Errorf("the file the log link points at now holds %q, %v", got, err)
	}
	if fi, err := os.Lstat(filepath.Join(spool, prefetchWorkerLog)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("worker.log is not a regular file: %v", err)
	}
}

// A segment not in the archive exits 1 without --archived-through; a bad
// --archived-through or --wal-segment-size exits 255 (PostgreSQL stops
// recovery) before the archive is read, and one that does not cover the
// segment leaves 1. A data directory in the recovery a restore set up,
// whose segment within --archived-through is gone, exits 255.
func TestWALFetch_ArchivedThrough(t *testing.T) {
	const name = "000000010000000000000003"
	cfg := writeSiteConfig(t, storetest.Local(t))
	// A store with nothing in it is refused as unmounted.
	prev := filepath.Join(t.TempDir(), "000000010000000000000002")
	if err := os.WriteFile(prev, waltest.Segment(t, filepath.Base(prev), 16<<20, 2), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := run(t, "--config", cfg, "wal-push", prev); got != ExitOK {
		t.Fatalf("wal-push: exit %d", got)
	}
	data := t.TempDir()
	if err := os.Mkdir(filepath.Join(data, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(data, "pg_wal", "RECOVERYXLOG")
	for _, c := range []struct {
		name  string
		flags []string
		want  int
	}{
		{"OKNotArchived", nil, exitWALMissing},
		{"OKAfterTheEnd", []string{"--archived-through", "000000010000000000000002", "--wal-segment-size", "16777216"}, exitWALMissing},
		{"ErrLost", []string{"--archived-through", "000000010000000000000004", "--wal-segment-size", "16777216"}, exitWALFatal},
		{"ErrLostSegmentSize", []string{"--archived-through", "000000010000000000000004", "--wal-segment-size", "1048576"}, exitWALFatal},
		{"ErrBadSegment", []string{"--archived-through", "00000001000000000000000", "--wal-segment-size", "16777216"}, exitWALFatal},
		{"ErrBadSegmentSize", []string{"--archived-through", "000000010000000000000002", "--wal-segment-size", "1000"}, exitWALFatal},
		{"ErrSegmentOutOfRange", []string{"--archived-through", "000000010000000000000100", "--wal-segment-size", "16777216"}, exitWALFatal},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append(append([]string{"--config", cfg, "wal-fetch"}, c.flags...), name, dest)
			if got := run(t, args...); got != c.want {
				t.Errorf("hoard %v: exit %d, want %d", args, got, c.want)
			}
		})
	}
}

// TestWALFetch_PGControl: wal-fetch checks a segment's system identifier
// against the data directory's global/pg_control above DEST. Where there
// is none (run by hand), nothing is checked; one that cannot be read
// (here a directory, then 4 bytes: a failing disk) stops the fetch (exit
// 255) instead of turning the check off without a word, and so does one
// whose CRC fails read after read (damaged): its timeline, which says
// which history files are ignored, is not taken from it.
func TestWALFetch_PGControl(t *testing.T) {
	const name = "000000010000000000000003"
	cfg := writeSiteConfig(t, localConfig(t.TempDir()))
	pushSegment(t, cfg, name)
	pgdata := t.TempDir()
	for _, d := range []string{"pg_wal", "global"} {
		if err := os.Mkdir(filepath.Join(pgdata, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
	control := filepath.Join(pgdata, "global", "pg_control")
	if code, msg := runErr(t, "--config", cfg, "wal-fetch", name, dest); code != ExitOK {
		t.Fatalf("wal-fetch without pg_control: exit %d, %s", code, msg)
	}
	if err := os.Mkdir(control, 0o700); err != nil {
		t.Fatal(err)
	}
	if code, msg := runErr(t, "--config", cfg, "wal-fetch", name, dest); code != exitWALFatal || !strings.Contains(msg, control) {
		t.Errorf("wal-fetch with pg_control a directory: exit %d, %q; want %d naming %s", code, msg, exitWALFatal, control)
	}
	if err := os.Remove(control); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(control, []byte{1, 2, 3, 4}, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, msg := runErr(t, "--config", cfg, "wal-fetch", name, dest); code != exitWALFatal || !strings.Contains(msg, control) {
		t.Errorf("wal-fetch with a short pg_control: exit %d, %q; want %d naming %s", code, msg, exitWALFatal, control)
	}
	writePGControl(t, pgdata, 1<<20)
	b, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(b[wal.ControlSystemIDOffset:], 7123456789012345678) // waltest's
	binary.LittleEndian.PutUint32(b[288:], wal.ControlCRC(b[:288]))
	if err := os.WriteFile(control, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, msg := runErr(t, "--config", cfg, "wal-fetch", name, dest); code != ExitOK {
		t.Fatalf("wal-fetch with a whole pg_control: exit %d, %s", code, msg)
	}
	binary.LittleEndian.PutUint32(b[48:], 2) // checkPointCopy.ThisTimeLineID, after the CRC was taken
	if err := os.WriteFile(control, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, msg := runErr(t, "--config", cfg, "wal-fetch", name, dest); code != exitWALFatal || !strings.Contains(msg, control) || !strings.Contains(msg, "CRC") {
		t.Errorf("wal-fetch with a pg_control whose CRC fails: exit %d, %q; want %d naming %s and its CRC", code, msg, exitWALFatal, control)
	}
}

// TestWALFetch_ArchivedThroughSegmentSize: without --wal-segment-size,
// --archived-through is read at the segment size of the data directory's
// pg_control above DEST (run by hand on a cluster made with initdb
// --wal-segsize=1), not at 16 MiB; without pg_control the size is not
// known and wal-fetch refuses (exit 255), saying which flag to give; a
// --wal-segment-size that pg_control contradicts is refused too. A
// pg_control that fails its CRC (here one whose size was changed after,
// as a read during the server's rewrite may see it) or is cut short is
// refused without the flag; with it, the flag's size stands, with a
// warning, but the fetch still stops (exit 255): the timeline of the
// data directory comes from the same pg_control, read again while its CRC
// fails (a torn read), and one that still fails or is cut short is
// damaged.
func TestWALFetch_ArchivedThroughSegmentSize(t *testing.T) {
	cfg := writeSiteConfig(t, storetest.Local(t))
	// A store with nothing in it is refused as unmounted.
	prev := filepath.Join(t.TempDir(), "000000010000000000000002")
	if err := os.WriteFile(prev, waltest.Segment(t, filepath.Base(prev), 1<<20, 2), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := run(t, "--config", cfg, "wal-push", prev); got != ExitOK {
		t.Fatalf("wal-push: exit %d", got)
	}
	bare := t.TempDir()
	withControl := t.TempDir()
	for _, data := range []string{bare, withControl} {
		if err := os.Mkdir(filepath.Join(data, "pg_wal"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "recovery.signal"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePGControl(t, withControl, 1<<20)
	badCRC, short := t.TempDir(), t.TempDir()
	for _, data := range []string{badCRC, short} {
		if err := os.CopyFS(data, os.DirFS(withControl)); err != nil {
			t.Fatal(err)
		}
	}
	control := filepath.Join(badCRC, "global", "pg_control")
	b, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b[wal.ControlSegSizeOffset:], 16<<20)
	if err := os.WriteFile(control, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(short, "global", "pg_control"), 100); err != nil {
		t.Fatal(err)
	}
	const unchecked = "--wal-segment-size not checked against the data directory's pg_control"
	// 0x200 and 0x300 exist only below 16 MiB (256 segments a log).
	for _, c := range []struct {
		name  string
		data  string
		flags []string
		want  int
		msg   string
	}{
		{"OKFromPGControl", withControl, []string{"--archived-through", "000000010000000000000200"}, exitWALMissing, ""},
		{"OKFlag", bare, []string{"--archived-through", "000000010000000000000200", "--wal-segment-size", "1048576"}, exitWALMissing, ""},
		{"ErrLostFromPGControl", withControl, []string{"--archived-through", "000000010000000000000400"}, exitWALFatal, "000000010000000000000300"},
		{"ErrNotKnown", bare, []string{"--archived-through", "000000010000000000000200"}, exitWALFatal, "--wal-segment-size"},
		{"ErrContradicted", withControl, []string{"--archived-through", "000000010000000000000200", "--wal-segment-size", "16777216"}, exitWALFatal, "1048576"},
		// The flag's size stands, but the timeline is read from the same
		// pg_control (archive.ReadClusterControl): damaged, it stops the fetch.
		{"ErrFlagBadCRC", badCRC, []string{"--archived-through", "000000010000000000000200", "--wal-segment-size", "1048576"}, exitWALFatal, "the timeline of the data directory"},
		{"ErrFlagShort", short, []string{"--archived-through", "000000010000000000000200", "--wal-segment-size", "1048576"}, exitWALFatal, "the timeline of the data directory"},
		{"ErrBadCRC", badCRC, []string{"--archived-through", "000000010000000000000200"}, exitWALFatal, "CRC"},
		{"ErrShort", short, []string{"--archived-through", "000000010000000000000200"}, exitWALFatal, "100 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dest := filepath.Join(c.data, "pg_wal", "RECOVERYXLOG")
			args := append(append([]string{"--config", cfg, "wal-fetch"}, c.flags...), "000000010000000000000300", dest)
			msg, got, log := runLogged(args...)
			if got != c.want || !strings.Contains(msg, c.msg) {
				t.Errorf("hoard %v: exit %d, %q; want %d, %q", args, got, msg, c.want, c.msg)
			}
			// The flag's size stood in for a pg_control not read: said so,
			// naming it; not where it was read, or is missing.
			warned := strings.Contains(log, unchecked) && strings.Contains(log, filepath.Join(c.data, "global", "pg_control"))
			if want := strings.Contains(c.name, "Flag") && c.data != bare; warned != want {
				t.Errorf("hoard %v: warned %t, want %t; log:\n%s", args, warned, want, log)
			}
		})
	}
}

// writePGControl writes global/pg_control of data as PostgreSQL 13 to 16
// lay it out (pg_control_version 1300), with WAL segments of segSize bytes
// on timeline 1, and its CRC.
func writePGControl(t *testing.T, data string, segSize uint32) {
	t.Helper()
	b := make([]byte, 8192)
	binary.LittleEndian.PutUint64(b[wal.ControlSystemIDOffset:], 7000000000000000001)
	binary.LittleEndian.PutUint32(b[wal.ControlVersionOffset:], 1300)
	binary.LittleEndian.PutUint32(b[48:], 1) // checkPointCopy.ThisTimeLineID
	binary.LittleEndian.PutUint32(b[wal.ControlSegSizeOffset:], segSize)
	at, err := wal.ControlCRCOffset(b)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b[at:], wal.ControlCRC(b[:at]))
	if err := os.MkdirAll(filepath.Join(data, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "global", "pg_control"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// clearConfigEnv unsets, for the test, every variable hoard reads its
// configuration from.
func clearConfigEnv(t *testing.T) {
	t.Helper()
	names := []string{"HOARD_CONFIG", "PGHOARD_CONFIG"}
	for _, ev := range config.EnvVars {
		names = append(names, ev.Name, ev.Name+"_FILE")
	}
	for _, k := range names {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
}

// TestWALFetch_NoConfiguration: wal-fetch run by PostgreSQL after a restore
// configured by HOARD_* variables alone finds neither a file nor the
// variables. It stops recovery (exit 255) with an error that names the
// site it was asked for and says that no configuration was found, instead
// of the first setting missing from a site "default".
func TestWALFetch_NoConfiguration(t *testing.T) {
	clearConfigEnv(t)
	t.Chdir(t.TempDir())
	app := App("test")
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	args := []string{"hoard", "wal-fetch", "--site", "prod", "000000010000000000000003", filepath.Join(t.TempDir(), "RECOVERYXLOG")}
	err := PostgresStatus(app, args, app.RunContext(context.Background(), OrderArgs(app, args)))
	if got, want := ExitCode(err), exitWALFatal; got != want {
		t.Fatalf("exit %d, want %d (%v)", got, want, err)
	}
	msg := fmt.Sprint(err)
	for _, want := range []string{`no configuration for site "prod"`, "no --config FILE, no HOARD_CONFIG, and no HOARD_* variables", "put --config FILE into the command"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "site default") {
		t.Errorf("error names site default, not the site asked for:\n%s", msg)
	}
}
