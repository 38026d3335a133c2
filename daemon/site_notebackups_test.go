package daemon

import (
	"testing"

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
