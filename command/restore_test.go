package command

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

// parseRestoreTarget runs restoreTarget on args given to hoard restore.
func parseRestoreTarget(t *testing.T, args ...string) (restore.Target, error) {
	t.Helper()
	var got restore.Target
	var gotErr error
	cmd := restoreCommand()
	cmd.Action = func(c *cli.Context) error {
		got, gotErr = restoreTarget(c)
		return nil
	}
	app := &cli.App{Name: "hoard", Commands: []*cli.Command{cmd}, ExitErrHandler: func(*cli.Context, error) {}}
	if err := app.Run(append([]string{"hoard", "restore"}, args...)); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return got, gotErr
}

func TestRestoreTarget(t *testing.T) {
	tt, err := parseRestoreTarget(t, "--target-time", "2026-01-02T03:04:05+02:00")
	if err != nil || !tt.Time.Equal(time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC)) || tt.Timeline != "latest" {
		t.Errorf("time: %+v, %v", tt, err)
	}
	tt, err = parseRestoreTarget(t, "--recovery-target-time", "2026-01-02 03:04:05.5Z", "--target-inclusive=false")
	if err != nil || tt.Time.Nanosecond() != 500000000 || tt.Inclusive == nil || *tt.Inclusive {
		t.Errorf("alias and inclusive: %+v, %v", tt, err)
	}
	tt, err = parseRestoreTarget(t, "--recovery-target-xid", "4294967301")
	if err != nil || tt.XID != 4294967301 || tt.Inclusive != nil {
		t.Errorf("xid: %+v, %v", tt, err)
	}
	tt, err = parseRestoreTarget(t, "--target-lsn", "1/3000060", "--target-timeline", "2")
	if err != nil || tt.LSN != 0x103000060 || tt.Timeline != "2" {
		t.Errorf("lsn: %+v, %v", tt, err)
	}
	tt, err = parseRestoreTarget(t, "--recovery-target-name", "rp1")
	if err != nil || tt.Name != "rp1" {
		t.Errorf("name: %+v, %v", tt, err)
	}
	tt, err = parseRestoreTarget(t, "--target-immediate")
	if err != nil || !tt.Immediate {
		t.Errorf("immediate: %+v, %v", tt, err)
	}
	// What PostgreSQL does at the end without a target: accepted, as
	// PGHoard's scripts may pass it.
	if _, err := parseRestoreTarget(t, "--recovery-target-action", "promote"); err != nil {
		t.Errorf("promote without a target: %v", err)
	}
	for _, args := range [][]string{
		{"--target-time", "2026-01-02T03:04:05"}, // no zone
		{"--target-time", "2026-01-02"},
		{"--target-time", "yesterday"},
		{"--target-xid", "abc"},
		{"--target-lsn", "3000060"},
		{"--target-xid", "5", "--target-immediate"},
		{"--target-timeline", "newest"},
		{"--target-action", "pause"}, // no target: PostgreSQL would promote at the end
		{"--recovery-target-action", "shutdown", "--target-timeline", "2"},
	} {
		_, err := parseRestoreTarget(t, args...)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	_, err = parseRestoreTarget(t, "--target-time", "2026-01-02T03:04:05")
	if err == nil || !strings.Contains(err.Error(), "2026-01-02T03:04:05Z") {
		t.Errorf("no-zone hint: %v", err)
	}
}

// TestTargetTime: every form --target-time's hints suggest is accepted.
func TestTargetTime(t *testing.T) {
	hint := regexp.MustCompile(`e\.g\. (\S+(?: \S+)?) for .* or (\S+(?: \S+)?)$`)
	for _, in := range []string{"2026-12-01T23:20", "2026-12-01 23:20", "2026-12-01T23:20:05", "2026-12-01 23:20:05.5", "2026-12-01"} {
		t.Run(in, func(t *testing.T) {
			_, err := targetTime(in)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("targetTime(%q) = %v, want a usage error with a hint", in, err)
			}
			m := hint.FindStringSubmatch(ue.hint)
			if m == nil {
				t.Fatalf("hint %q names no forms", ue.hint)
			}
			for _, form := range m[1:] {
				if _, err := targetTime(form); err != nil {
					t.Errorf("hint for %q suggests %q, which is refused: %v", in, form, err)
				}
			}
		})
	}
	for _, ok := range []string{"2026-12-01T23:20Z", "2026-12-01 23:20+02:00", "2026-12-01T23:20:05.123+0200", "2026-12-01T23:20-05"} {
		if _, err := targetTime(ok); err != nil {
			t.Errorf("targetTime(%q): %v", ok, err)
		}
	}
}

// TestPrintRestored_ConfigOutside: a backup of a cluster whose
// configuration lives outside its data directory (Debian's and Ubuntu's
// /etc/postgresql/<version>/<cluster>) restores without postgresql.conf
// and pg_hba.conf, on which pg_ctl start fails: the summary says so and
// what to copy, before the start command. With both files, it says
// nothing of them.
func TestPrintRestored_ConfigOutside(t *testing.T) {
	dir := t.TempDir()
	summary := func() string {
		var buf bytes.Buffer
		printRestored(&buf, restore.Options{TargetDir: dir}, &restore.Result{Backup: &archive.BackupInfo{Name: "b1"}}, nil)
		return buf.String()
	}
	got := summary()
	// Debian's postgresql.conf has include_dir = 'conf.d', relative to
	// itself: copied without that directory, PostgreSQL stops at start
	// ("could not open configuration directory .../conf.d").
	for _, want := range []string{"lacks postgresql.conf, pg_hba.conf, pg_ident.conf:", "/etc/postgresql/", "data_directory", "conf.d"} {
		if !strings.Contains(got, want) {
			t.Errorf("restored without configuration files, the summary does not say %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "postgresql.conf") > strings.Index(got, "pg_ctl -D") {
		t.Errorf("the summary names the missing files after the start command:\n%s", got)
	}
	for _, f := range []string{"postgresql.conf", "pg_hba.conf", "pg_ident.conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := summary(); strings.Contains(got, "postgresql.conf") {
		t.Errorf("restored with its configuration files, the summary still names them:\n%s", got)
	}
}

// TestPrintRestored_ConfigOutsideThenPort: restored without
// postgresql.conf (Debian's layout), the port and archiving the cluster
// will have come from the postgresql.conf the operator copies in, which
// the summary cannot read. Its advice follows the operator's order: copy
// the files, then set port (and archive_mode) in postgresql.auto.conf,
// which overrides the copy, then start. Before, the port was probed as
// PostgreSQL's default, 5432, before the copy: with 5432 free nothing was
// said (the copy's port, the original's on this host, then failed at
// start), with 5432 taken the start command's -o "-p" was computed for a
// port the copy may not set; and archive_mode, which Debian's
// postgresql.conf holds, was never mentioned.
func TestPrintRestored_ConfigOutsideThenPort(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "postgresql.auto.conf"), []byte("# Do not edit this file manually!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	printRestored(&buf, restore.Options{TargetDir: dir}, &restore.Result{Backup: &archive.BackupInfo{Name: "b1"}}, nil)
	got := buf.String()
	copyAt := strings.Index(got, "Copy them from there")
	portAt := strings.Index(got, "  port = ")
	archAt := strings.Index(got, "  archive_mode = 'off'")
	startAt := strings.Index(got, "pg_ctl -D")
	if copyAt < 0 || portAt < 0 || archAt < 0 || startAt < 0 {
		t.Fatalf("the summary lacks the copy step, the port or archive_mode advice, or the start command:\n%s", got)
	}
	if !(copyAt < portAt && portAt < startAt && copyAt < archAt && archAt < startAt) {
		t.Errorf("the summary does not advise copy, then port and archive_mode, then start:\n%s", got)
	}
	if !strings.Contains(got[copyAt:portAt], "postgresql.auto.conf") {
		t.Errorf("the port advice does not name postgresql.auto.conf, which overrides the copied postgresql.conf:\n%s", got)
	}
	if strings.Contains(got, "-o \"-p") {
		t.Errorf("the start command sets a port chosen before the configuration that sets it is copied:\n%s", got)
	}
}

// TestRestoreError_TablespaceInPlace: a tablespace at its original path
// that holds files stops a restore with --overwrite too; the hint must
// not tell the user to pass --overwrite again, but how to go on.
func TestRestoreError_TablespaceInPlace(t *testing.T) {
	err := restoreError(fmt.Errorf("tablespace ts1: %w: /srv/ts1 holds PG_15_202209061: %w", restore.ErrTargetNotEmpty, restore.ErrTablespaceInPlace), nil)
	msg := err.Error()
	if strings.Contains(msg, "pass --overwrite") || !strings.Contains(msg, "--tablespace-dir") || ExitCode(err) != ExitUsage {
		t.Errorf("restoreError = %q (exit %d), want a usage error whose hint names --tablespace-dir, not --overwrite", msg, ExitCode(err))
	}
}

// TestPrintRestored_ArchiveNote: a restored cluster whose configuration
// archives (archive_mode on, or always, as the original's did) archives
// its new timeline with the original's archive_command once promoted: a
// copy beside the original then sends it into the original's site, whose
// restores to the end follow that timeline from then on. The summary says
// so, and how to stop it, unless --archive-mode off was given, the
// configuration does not archive, or a standby with archive_mode on (which
// archives nothing) was restored.
func TestPrintRestored_ArchiveNote(t *testing.T) {
	for _, c := range []struct {
		name       string
		conf, auto string
		o          restore.Options
		note       bool
	}{
		{"On", "archive_mode = on\narchive_command = 'hoard --config /etc/hoard/hoard.json wal-push %p'\n", "", restore.Options{}, true},
		{"AlwaysQuotedInAuto", "#archive_mode = off\n", "archive_mode = 'always'  # set by ALTER SYSTEM\n", restore.Options{}, true},
		{"ErrOffFlag", "archive_mode = on\n", "", restore.Options{ArchiveOff: true}, false},
		{"ErrOffInAuto", "archive_mode = on\n", "archive_mode = 'off'\n", restore.Options{}, false},
		{"ErrNotSet", "wal_level = replica\n", "", restore.Options{}, false},
		{"ErrStandbyOn", "archive_mode = on\n", "", restore.Options{Standby: true}, false},
		{"StandbyAlways", "archive_mode = always\n", "", restore.Options{Standby: true}, true},
		{"NoEquals", "archive_mode on\n", "", restore.Options{}, true},
		{"Boolean", "archive_mode = true\n", "", restore.Options{}, true},
		{"ErrOtherName", "archive_mode_x = on\narchive_timeout = 60\n", "", restore.Options{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range map[string]string{"postgresql.conf": c.conf, "postgresql.auto.conf": c.auto, "pg_hba.conf": "", "pg_ident.conf": ""} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c.o.TargetDir = dir
			var buf bytes.Buffer
			printRestored(&buf, c.o, &restore.Result{Backup: &archive.BackupInfo{Name: "b1"}}, nil)
			got := buf.String()
			if note := strings.Contains(got, "archive_mode = 'off'"); note != c.note {
				t.Errorf("note about archiving %v, want %v:\n%s", note, c.note, got)
			}
			if c.note && (!strings.Contains(got, "--archive-mode off") || strings.Index(got, "archive_mode = 'off'") > strings.Index(got, "pg_ctl -D")) {
				t.Errorf("the note does not name --archive-mode off, or comes after the start command:\n%s", got)
			}
		})
	}
}

// TestPrintRestored_EnvOnly: restored with the configuration from HOARD_*
// variables alone, the summary names them before the start command (the
// restore_command's wal-fetch runs in PostgreSQL's environment and needs
// them) and says how to use a file instead; with a file it says nothing.
func TestPrintRestored_EnvOnly(t *testing.T) {
	dir := t.TempDir()
	summary := func(names []string) string {
		var buf bytes.Buffer
		printRestored(&buf, restore.Options{TargetDir: dir}, &restore.Result{Backup: &archive.BackupInfo{Name: "b1"}}, names)
		return buf.String()
	}
	t.Run("OK", func(t *testing.T) {
		out := summary([]string{"HOARD_BACKUP_LOCATION", "HOARD_STORAGE_TYPE", "HOARD_S3_SECRET_ACCESS_KEY_FILE"})
		want := "  HOARD_BACKUP_LOCATION HOARD_STORAGE_TYPE HOARD_S3_SECRET_ACCESS_KEY_FILE\n"
		i, start := strings.Index(out, want), strings.Index(out, "pg_ctl -D")
		if i < 0 || start < 0 || i > start {
			t.Fatalf("summary does not list the variables before the start command:\n%s", out)
		}
		for _, want := range []string{"PostgreSQL's environment, which must hold them too", "add --config FILE after the hoard of restore_command"} {
			if !strings.Contains(out, want) {
				t.Errorf("summary lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("File", func(t *testing.T) {
		if out := summary(nil); strings.Contains(out, "HOARD_") {
			t.Errorf("summary of a restore with --config names HOARD_ variables:\n%s", out)
		}
	})
}

// TestPrintRestored_CarriedSettings: the standby settings the restored
// configuration carries from the backup's (a backup of a standby) and the
// restore does not override are named with their values before the start
// command, primary_conninfo's password masked, with how to override them:
// for a standby, which uses them, --primary-conninfo or lines at the end
// of postgresql.auto.conf; for a primary, that they apply only in standby
// mode. Without them, nothing is said.
func TestPrintRestored_CarriedSettings(t *testing.T) {
	auto := "primary_conninfo = 'host=old.example user=rep password=s3cret'\nprimary_slot_name = 'standby1'\n" +
		"recovery_end_command = '/site/end.sh'\narchive_cleanup_command = 'pg_archivecleanup /shared/archive %r'\n"
	for _, c := range []struct {
		name    string
		auto    string
		o       restore.Options
		want    []string
		notWant []string
	}{
		{"Standby", auto, restore.Options{Standby: true},
			[]string{"  primary_conninfo = 'host=old.example password=xxxxx user=rep'\n", "  primary_slot_name = 'standby1'\n",
				"  recovery_end_command = '/site/end.sh'\n", "  archive_cleanup_command = 'pg_archivecleanup /shared/archive %r'\n",
				"--primary-conninfo", "end of postgresql.auto.conf", "primary_slot_name = ''"}, nil},
		{"StandbyConnInfo", auto, restore.Options{Standby: true, PrimaryConnInfo: "host=new.example"},
			[]string{"  primary_slot_name = 'standby1'\n"}, []string{"primary_conninfo = 'host=old.example"}},
		{"Primary", auto, restore.Options{},
			[]string{"  primary_conninfo = 'host=old.example password=xxxxx user=rep'\n", "  primary_slot_name = 'standby1'\n", "only in standby mode"},
			[]string{"/site/end.sh", "pg_archivecleanup"}},
		{"ErrNone", "work_mem = '8MB'\n", restore.Options{Standby: true}, nil, []string{"primary_", "end of postgresql.auto.conf"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := recoveryConfigured(t, c.auto)
			c.o.TargetDir = dir
			c.o.RecoveryEndCommand = ""
			if err := restore.WriteRecoveryConfig(dir, restore.RecoveryConfig{Standby: c.o.Standby, PrimaryConnInfo: c.o.PrimaryConnInfo}); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			printRestored(&buf, c.o, &restore.Result{Backup: &archive.BackupInfo{Name: "b1"}}, nil)
			got := buf.String()
			start := strings.Index(got, "pg_ctl -D")
			for _, w := range c.want {
				if i := strings.Index(got, w); i < 0 || i > start {
					t.Errorf("the summary does not say %q before the start command:\n%s", w, got)
				}
			}
			for _, w := range append(c.notWant, "s3cret") {
				if strings.Contains(got, w) {
					t.Errorf("the summary says %q:\n%s", w, got)
				}
			}
		})
	}
}

// recoveryConfigured returns a data directory of PostgreSQL 16 whose
// postgresql.auto.conf holds auto.
func recoveryConfigured(t *testing.T, auto string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"PG_VERSION": "16\n", "postgresql.conf": "", "postgresql.auto.conf": auto, "pg_hba.conf": "", "pg_ident.conf": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestPrintRestored_PassedOver: when the automatic choice passed over a
// damaged backup, the summary says so first, naming it and why, and that
// recovery replays the WAL from the older backup restored.
func TestPrintRestored_PassedOver(t *testing.T) {
	var buf bytes.Buffer
	printRestored(&buf, restore.Options{TargetDir: t.TempDir()}, &restore.Result{
		Backup: &archive.BackupInfo{Name: "b1", StartWALSegment: "000000010000000000000002"},
		PassedOver: []restore.PassedOver{{Backup: &archive.BackupInfo{Name: "b2"},
			Err: fmt.Errorf("backup b2: its control object lists 1 of the 2 chunks: %w", restore.ErrMissingChunks)}},
	}, nil)
	got := buf.String()
	for _, want := range []string{"PASSED OVER: backup b2", "lists 1 of the 2 chunks", "hoard verify"} {
		if !strings.Contains(got, want) {
			t.Errorf("the summary does not say %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "PASSED OVER") > strings.Index(got, "Restored basebackup b1") {
		t.Errorf("the summary names the backup passed over after the one restored:\n%s", got)
	}
}

// TestPrintRestored_WALGapDamaged: a gap accepted with --stop-at-gap (or
// warned of with a target) whose segments include some stored damaged
// (restore.WALGap.Damaged: in local storage a FIFO, a socket or a
// directory under the name). The summary called them all missing, which
// sends the operator looking for segments that were never stored rather
// than at the file that blocks them: it names each as stored damaged,
// with what is there and what to do, as restore's own WAL check does,
// and a gap of such segments only is not called missing.
func TestPrintRestored_WALGapDamaged(t *testing.T) {
	damaged := func(seg string) archive.DamagedWAL {
		key := "site/xlog/" + seg
		return archive.DamagedWAL{WALFile: archive.WALFile{Name: seg, Key: key},
			Err: fmt.Errorf("/store/%s is a FIFO, not a regular file: move it away: %w", key, storage.ErrObjectDamaged)}
	}
	const s4, s5, s6 = "000000010000000000000004", "000000010000000000000005", "000000010000000000000006"
	old := &archive.Archive{Site: "old"}
	moved := &archive.Archive{Site: "new", MovedFrom: []*archive.Archive{old}}
	oldDamaged := damaged(s5)
	oldDamaged.Archive = old
	cases := []struct {
		name    string
		gap     restore.WALGap
		target  restore.Target
		archive *archive.Archive
		want    []string
		notWant []string
	}{
		{name: "OneOfThree", gap: restore.WALGap{First: s4, Last: s6, Damaged: []archive.DamagedWAL{damaged(s5)}},
			want:    []string{s4 + " through " + s6 + " are missing or stored damaged", "site/xlog/" + s5 + " is stored damaged", "is a FIFO"},
			notWant: []string{"are missing,"}},
		{name: "All", gap: restore.WALGap{First: s5, Last: s5, Damaged: []archive.DamagedWAL{damaged(s5)}},
			want:    []string{s5 + " is stored damaged", "site/xlog/" + s5 + " is stored damaged", "is a FIFO"},
			notWant: []string{"missing"}},
		{name: "AllTarget", gap: restore.WALGap{First: s5, Last: s5, Damaged: []archive.DamagedWAL{damaged(s5)}},
			target:  restore.Target{Time: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)},
			want:    []string{"WAL GAP: " + s5 + " is stored damaged", "site/xlog/" + s5 + " is stored damaged", "is a FIFO"},
			notWant: []string{"missing"}},
		// In a site with moved_from sites, which may hold the same key
		// in another storage, the line names the site holding it.
		{name: "MovedFrom", gap: restore.WALGap{First: s5, Last: s5, Damaged: []archive.DamagedWAL{oldDamaged}},
			archive: moved, want: []string{"WAL segment site/xlog/" + s5 + " of site old is stored damaged"}},
		{name: "NoneDamaged", gap: restore.WALGap{First: s4, Last: s6},
			want: []string{s4 + " through " + s6 + " are missing"}, notWant: []string{"damaged"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.gap
			g.Next, g.ReachSegment, g.ReachLSN = "000000010000000000000007", "000000010000000000000003", 0x4000000
			var buf bytes.Buffer
			printRestored(&buf, restore.Options{TargetDir: t.TempDir(), Target: tc.target, Archive: tc.archive}, &restore.Result{
				Backup: &archive.BackupInfo{Name: "b1", StartWALSegment: "000000010000000000000002"}, WALGap: &g,
			}, nil)
			got := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("the summary does not say %q:\n%s", w, got)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("the summary says %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestRestoreError_BadWALDir: a bad --wal-dir is a usage error (exit 2)
// whose hint says what --wal-dir must be.
func TestRestoreError_BadWALDir(t *testing.T) {
	err := restoreError(fmt.Errorf("WAL directory wal must be an absolute path: %w", restore.ErrBadWALDir), nil)
	if msg := err.Error(); !strings.Contains(msg, "absolute") || !strings.Contains(msg, "hint: give --wal-dir") || ExitCode(err) != ExitUsage {
		t.Errorf("restoreError = %q (exit %d), want a usage error with a hint for --wal-dir", msg, ExitCode(err))
	}
}

// TestPrintRestored_WALDir: restored with --wal-dir, the summary says
// that pg_wal links to it, for a primary and a standby, and that the
// checked WAL is kept in its spool.
func TestPrintRestored_WALDir(t *testing.T) {
	for _, standby := range []bool{false, true} {
		dir, walDir := t.TempDir(), t.TempDir()
		for _, name := range []string{"postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf"} {
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		o := restore.Options{TargetDir: dir, WALDir: walDir, Standby: standby}
		printRestored(&buf, o, &restore.Result{Backup: &archive.BackupInfo{Name: "b1"}, WALChecked: 1, WALSpooled: []string{"000000010000000000000002"}}, nil)
		got := buf.String()
		for _, want := range []string{"pg_wal is a link to " + walDir + ", where PostgreSQL writes its WAL.", "1 kept in " + walDir + "/hoard-prefetch for wal-fetch"} {
			if !strings.Contains(got, want) {
				t.Errorf("standby %v: summary without %q:\n%s", standby, want, got)
			}
		}
	}
}
