package command

import (
	"fmt"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
)

// TestRetentionPolicy_HugeHours: hour and day values too large for a
// time.Duration (about 292 years) mean "longer than anyone waits", as in
// PGHoard, whose timedelta holds them; they must not wrap around to a
// negative duration, which made every backup "old" (start + interval in
// the far past) and had retention delete all but basebackup_count_min.
func TestRetentionPolicy_HugeHours(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var backups []*archive.BackupInfo
	for i := 3; i >= 1; i-- {
		start := now.Add(-time.Duration(i) * 24 * time.Hour)
		backups = append(backups, &archive.BackupInfo{Name: start.Format("2006-01-02_15-04") + "_0", StartTime: start, StartWALSegment: "000000010000000000000001"})
	}
	for _, tc := range []struct{ name, keys string }{
		{"interval_hours 1e10", `"basebackup_interval_hours": 1e10, "basebackup_age_days_max": 30`},
		{"interval_hours 3e6", `"basebackup_interval_hours": 3000000, "basebackup_age_days_max": 30`},
		{"age_days_max 999999", `"basebackup_age_days_max": 999999`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"basebackup_count": 5, "basebackup_count_min": 1, %s}}}`, t.TempDir(), tc.keys)
			cfg, err := config.Parse("test.json", []byte(js), nil)
			if err != nil {
				t.Fatal(err)
			}
			p := retentionPolicy(cfg.BackupSites["s"])
			if p.Interval < 0 || p.MaxAge < 0 {
				t.Errorf("policy interval %v, max age %v: negative", p.Interval, p.MaxAge)
			}
			plan := archive.PlanRetention(backups, nil, p, now)
			for _, d := range plan.Delete {
				t.Errorf("deletes %s: %s", d.Backup.Name, d.Reason)
			}
		})
	}
}
