package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/metrics"
)

// TestSupervisor_NoteBackupsPlanted: the newest backup the status and
// hoard_last_backup_time report is the newest whose metadata
// authenticates, not a planted one that claims to have ended in 2099 and
// would silence the alert on a site whose backups stopped.
func TestSupervisor_NoteBackupsPlanted(t *testing.T) {
	real := bb("2024-05-01 00:00", "", basebackup.ReasonScheduled)
	real.Auth = archive.AuthOK
	planted := bb("2099-01-01 00:00", "", basebackup.ReasonScheduled)
	s := &supervisor{m: newSiteMetrics(metrics.New(nil), "s")}
	s.noteBackups(2, []*archive.BackupInfo{real, planted})
	if got := s.st.LastBackup; got == nil || got.Name != real.Name {
		t.Errorf("last backup %+v, want %s", got, real.Name)
	}
	if got, want := s.m.lastBackup.Value(), float64(real.StartTime.Unix()); got != want {
		t.Errorf("%s = %v, want %v", MetricLastBackup, got, want)
	}
}

// TestSupervisor_DecideOnlyForeignAuthenticated: after a pg_upgrade (or
// in a new site with another cluster's backups copied in), the only
// backups whose metadata authenticates are another system's. An unsigned
// backup planted beside them, claiming to be fresh and recording no
// system, must not stand for this cluster: a backup is due at once and
// none is reported as the newest. Before, the schedule went by
// Trusted(OfSystem(...)), which fell back to the planted one: no backup
// was due, and the planted one was reported as the newest.
func TestSupervisor_DecideOnlyForeignAuthenticated(t *testing.T) {
	old := bb("2024-05-02 11:00", "", basebackup.ReasonScheduled)
	old.Auth, old.SystemID = archive.AuthOK, "7000000000000000001"
	planted := bb("2024-05-02 11:30", "", basebackup.ReasonScheduled)
	site := Site{Name: "test", Active: true, WAL: WALArchiveCommand, Schedule: Schedule{Interval: 24 * time.Hour}}
	s := newSupervisor(testDaemon(t), site)
	s.noteSystemID("7000000000000000002")
	if d := s.decide(context.Background(), at("2024-05-02 12:00"), []*archive.BackupInfo{old, planted}); !d.Due {
		t.Errorf("not due (%s)", d.Why)
	}
	if got := s.status().LastBackup; got != nil {
		t.Errorf("last backup %+v, want none", got)
	}
}

// TestSupervisor_DecideKeylessUpgrade: in a site without keys, where no
// backup's metadata authenticates, the only backup says it is of another
// system than the node's (the cluster before a pg_upgrade): a backup of
// the node's cluster is due at once, and none is reported as the newest.
// Before, a claim that does not authenticate was not believed: the old
// cluster's backup held the new one's back for a whole interval (seen in
// TestPgUpgrade_Streaming, 3 minutes without a backup).
func TestSupervisor_DecideKeylessUpgrade(t *testing.T) {
	old := bb("2024-05-02 11:00", "", basebackup.ReasonScheduled)
	old.SystemID = "7000000000000000001"
	site := Site{Name: "test", Active: true, WAL: WALArchiveCommand, Schedule: Schedule{Interval: 24 * time.Hour}}
	s := newSupervisor(testDaemon(t), site)
	s.noteSystemID("7000000000000000002")
	if d := s.decide(context.Background(), at("2024-05-02 12:00"), []*archive.BackupInfo{old}); !d.Due {
		t.Errorf("not due (%s)", d.Why)
	}
	if got := s.status().LastBackup; got != nil {
		t.Errorf("last backup %+v, want none", got)
	}
	s.noteSystemID(old.SystemID)
	if d := s.decide(context.Background(), at("2024-05-02 12:00"), []*archive.BackupInfo{old}); d.Due {
		t.Errorf("due for the cluster the backup is of (%s)", d.Why)
	}
}
