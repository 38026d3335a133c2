package restore

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/wal"
)

// TestRun_RecoveryHistories: a backup on timeline 1, the archive's
// timelines 1 -> 2 -> 3. PostgreSQL asks restore_command for more history
// files than the target timeline's (seen by logging restore_command on
// real 13, 16 and 18 clusters): for recovery_target_timeline latest its
// probe asks for every one from the backup's timeline up
// (findNewestTimeLine), replay asks for the history of each timeline it
// switches to, and promotion probes every one after the target timeline.
// wal-fetch refuses a damaged or planted one (exit 255), and PostgreSQL
// then stops with the data directory written. Each such file is read and
// checked as wal-fetch checks it before anything is written: the restore
// fails naming it, and writes nothing. A file recovery never asks for (a
// later timeline's, where the server does not promote) does not stop it.
func TestRun_RecoveryHistories(t *testing.T) {
	testio.WithAndWithoutKeys(t, testRunRecoveryHistories)
}

func testRunRecoveryHistories(t *testing.T, keys bool) {
	hist2 := "1\t0/400000\tno recovery target specified\n"
	hist3 := hist2 + "2\t0/500000\tno recovery target specified\n"
	flip := func(name string) func(*testing.T, *archive.Archive) {
		return func(t *testing.T, a *archive.Archive) { flipStored(t, a, a.Layout.WALKey(name)) }
	}
	// In place of 00000002.history, the bytes and metadata of
	// 00000003.history: what a writer without the key can copy.
	moved := func(t *testing.T, a *archive.Archive) {
		ctx := context.Background()
		rc, o, err := a.Store.Open(ctx, a.Layout.WALKey("00000003.history"))
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if err := a.Store.Put(ctx, a.Layout.WALKey("00000002.history"), rc, o.Metadata); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		o      Options
		damage func(*testing.T, *archive.Archive)
		bad    string // the history file the restore must name; "": it succeeds
	}{
		{name: "LatestProbe", damage: flip("00000002.history"), bad: "00000002.history"},
		// Without keys nothing tells it from the file stored under
		// that name: wal-fetch delivers it, and PostgreSQL, which does
		// not parse the files its probe asks for (seen on 16 with a
		// 00000002.history that is no history of timeline 2), goes on.
		{name: "LatestProbeMoved", damage: moved, bad: map[bool]string{true: "00000002.history"}[keys]},
		{name: "NumericPath", o: Options{Target: Target{Timeline: "3"}}, damage: flip("00000002.history"), bad: "00000002.history"},
		{name: "NumericPromotion", o: Options{Target: Target{Timeline: "2"}}, damage: flip("00000003.history"), bad: "00000003.history"},
		{name: "CurrentPromotion", o: Options{Target: Target{Timeline: "current"}}, damage: flip("00000002.history"), bad: "00000002.history"},
		{name: "NumericShutdown", o: Options{Target: Target{Timeline: "2", Immediate: true}, TargetAction: ActionShutdown},
			damage: flip("00000003.history")},
		// A standby promotes at its target with promote (seen on 13, 15
		// and 18: TestRestoreTargetNotReached), probing the timelines
		// after the target's as a primary does; with pause it does not.
		{name: "StandbyPromote", o: Options{Standby: true, Target: Target{Timeline: "2", Immediate: true}, TargetAction: ActionPromote},
			damage: flip("00000003.history"), bad: "00000003.history"},
		{name: "StandbyPause", o: Options{Standby: true, Target: Target{Timeline: "2", Immediate: true}},
			damage: flip("00000003.history")},
		{name: "Sound"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := memArchive(t, keys)
			st := hostile.Put(t, a, hostile.Backup{Name: olderBackup, Signed: keys})
			pushFile(t, a, "00000002.history", []byte(hist2), 7000000000000000001)
			pushFile(t, a, "00000003.history", []byte(hist3), 7000000000000000001)
			if tc.damage != nil {
				tc.damage(t, a)
			}
			e := hostile.NewEnv(t)
			o := tc.o
			o.Archive, o.TargetDir, o.RestoreCommand, o.Logger = a, e.Target(), "hoard wal-fetch %f %p", zerolog.Nop()
			res, err := Run(context.Background(), o)
			if tc.bad == "" {
				if err != nil {
					t.Fatalf("restore: %v", err)
				}
				if res.Backup.Name != st.Name {
					t.Errorf("restored %s, want %s", res.Backup.Name, st.Name)
				}
				return
			}
			if err == nil {
				t.Fatalf("restore with %s damaged succeeded: PostgreSQL asks for it and wal-fetch refuses it", tc.bad)
			}
			for _, w := range []string{tc.bad, "wal-fetch"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
				t.Errorf("the refused restore wrote %d entries into %s", len(ents), e.Target())
			}
		})
	}
}

// TestCheckRecoveryHistories_BackupTimeline: a backup taken on timeline 2
// (a cluster promoted once), recovered on that timeline (latest with no
// newer one, current, or 2). PostgreSQL asks restore_command for
// 00000002.history twice: at startup for the target timeline's history
// (readTimeLineHistory(recoveryTargetTLI)), and at promotion to copy the
// parent's into the new timeline's (writeTimeLineHistory); seen by
// logging restore_command on PostgreSQL 15 with a cold copy of a cluster
// on timeline 2, which stopped at startup (FATAL: could not restore file
// "00000002.history" from archive: child process exited with exit code
// 255) when it answered 255, as wal-fetch does for a damaged file. A
// damaged one refuses the restore, standby or not; another system's at
// the backup's timeline is absent to wal-fetch (IgnoreUpgradedHistory)
// and stops nothing.
func TestCheckRecoveryHistories_BackupTimeline(t *testing.T) {
	testio.WithAndWithoutKeys(t, testCheckRecoveryHistoriesBackupTimeline)
}

func testCheckRecoveryHistoriesBackupTimeline(t *testing.T, keys bool) {
	const system = 7000000000000000001
	hist2 := []byte("1\t0/400000\tno recovery target specified\n")
	b := &archive.BackupInfo{Name: olderBackup, StartTimeline: 2, EndTimeline: 2, SystemID: "7000000000000000001",
		StartLSN: 0x500028, WALSegmentSize: hostile.SegmentSize}
	cases := []struct {
		name     string
		spec     string
		promotes bool
		store    func(*testing.T, *archive.Archive)
		bad      bool
	}{
		{name: "LatestPromotes", promotes: true, store: flipped(hist2, system), bad: true},
		{name: "LatestStandby", spec: "latest", store: flipped(hist2, system), bad: true},
		{name: "Current", spec: "current", promotes: true, store: flipped(hist2, system), bad: true},
		{name: "Numeric", spec: "2", store: flipped(hist2, system), bad: true},
		{name: "Sound", promotes: true, store: func(t *testing.T, a *archive.Archive) {
			pushFile(t, a, "00000002.history", hist2, system)
		}},
		{name: "OtherSystem", promotes: true, store: func(t *testing.T, a *archive.Archive) {
			pushFile(t, a, "00000002.history", hist2, system+1)
		}},
		{name: "NotArchived", promotes: true, store: func(*testing.T, *archive.Archive) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := memArchive(t, keys)
			tc.store(t, a)
			err := checkRecoveryHistories(context.Background(), a, b, wal.History{{Timeline: 2}}, tc.spec, tc.promotes, "")
			if !tc.bad {
				if err != nil {
					t.Fatalf("check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("check with 00000002.history damaged passed: PostgreSQL asks for it and wal-fetch refuses it")
			}
			for _, w := range []string{"00000002.history", "wal-fetch"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// flipped stores history file 00000002.history, data, for system, then
// flips a byte of the stored object.
func flipped(data []byte, system uint64) func(*testing.T, *archive.Archive) {
	return func(t *testing.T, a *archive.Archive) {
		pushFile(t, a, "00000002.history", data, system)
		flipStored(t, a, a.Layout.WALKey("00000002.history"))
	}
}

// TestRun_TargetHistoryDamaged: the archive's timelines 1 -> 2 -> 3 with
// 00000003.history damaged. The automatic choice (recovery_target_timeline
// latest) and a numeric target timeline read the target's history before
// choosing a backup, and stopped there with the decoding error alone:
// the object, but not what the operator can do about it. The error must
// name the object and the next step (a good copy in its place, or
// removing a planted one, and hoard verify), as the checks of the history
// files PostgreSQL asks for do (checkRecoveryHistories).
func TestRun_TargetHistoryDamaged(t *testing.T) {
	hist2 := "1\t0/400000\tno recovery target specified\n"
	hist3 := hist2 + "2\t0/500000\tno recovery target specified\n"
	for _, spec := range []string{"latest", "3"} {
		t.Run(spec, func(t *testing.T) {
			a := memArchive(t, true)
			hostile.Put(t, a, hostile.Backup{Name: olderBackup, Signed: true})
			pushFile(t, a, "00000002.history", []byte(hist2), 7000000000000000001)
			pushFile(t, a, "00000003.history", []byte(hist3), 7000000000000000001)
			flipStored(t, a, a.Layout.WALKey("00000003.history"))
			e := hostile.NewEnv(t)
			_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Target: Target{Timeline: spec},
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if err == nil {
				t.Fatal("restore with 00000003.history damaged succeeded")
			}
			for _, w := range []string{a.Layout.WALKey("00000003.history"), "good copy", "hoard verify"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
				t.Errorf("the refused restore wrote %d entries into %s", len(ents), e.Target())
			}
		})
	}
}

// TestRun_RecoveryHistoriesCustomCommand: a history file PostgreSQL asks
// for (at promotion, recovering to timeline 2) is damaged, and the restore_command is the operator's own
// (--restore-command), which hoard does not know to read this archive.
// restore still refuses (it checks the WAL of this archive whatever the
// command, as it checks the segments), but the error said "wal-fetch
// refuses it (exit 255): PostgreSQL would stop", which is not so for a
// command that does not run wal-fetch. It must name the command and say
// when PostgreSQL would stop: where it reads this archive through
// wal-fetch.
func TestRun_RecoveryHistoriesCustomCommand(t *testing.T) {
	hist2 := "1\t0/400000\tno recovery target specified\n"
	hist3 := hist2 + "2\t0/500000\tno recovery target specified\n"
	a := memArchive(t, true)
	hostile.Put(t, a, hostile.Backup{Name: olderBackup, Signed: true})
	pushFile(t, a, "00000002.history", []byte(hist2), 7000000000000000001)
	pushFile(t, a, "00000003.history", []byte(hist3), 7000000000000000001)
	// Asked for by the promotion at the end of recovery to timeline 2.
	flipStored(t, a, a.Layout.WALKey("00000003.history"))
	e := hostile.NewEnv(t)
	const cmd = "cp /mnt/wal/%f %p"
	_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Target: Target{Timeline: "2"},
		RestoreCommand: cmd, Logger: zerolog.Nop()})
	if err == nil {
		t.Fatal("restore with 00000003.history damaged succeeded")
	}
	for _, w := range []string{"00000003.history", cmd, "through hoard wal-fetch"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}
