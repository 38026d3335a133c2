package archive

import (
	"strings"
	"testing"
	"time"
)

// The manifest's times as PGHoard writes them: backup_start_time is
// backup_label's START TIME re-rendered by isoformat (a string: "+00:00"),
// backup_end_time a datetime ("Z").
func TestManifest_MarshalTimes(t *testing.T) {
	m := &Manifest{
		BackupStartTime: LabelTime{time.Date(2026, 11, 24, 3, 0, 1, 0, time.UTC)},
		BackupEndTime:   ManifestTime{time.Date(2026, 11, 24, 3, 4, 5, 657815000, time.UTC)},
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"backup_start_time":"2026-11-24T03:00:01+00:00"`, `"backup_end_time":"2026-11-24T03:04:05.657815Z"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("manifest lacks %s:\n%s", want, b)
		}
	}
	back, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if !back.BackupStartTime.Equal(m.BackupStartTime.Time) || !back.BackupEndTime.Equal(m.BackupEndTime.Time) {
		t.Errorf("round trip: %v, %v", back.BackupStartTime, back.BackupEndTime)
	}
	m.BackupEndTime = ManifestTime{time.Date(2026, 11, 24, 3, 4, 5, 0, time.UTC)}
	if b, _ := m.Marshal(); !strings.Contains(string(b), `"backup_end_time":"2026-11-24T03:04:05Z"`) {
		t.Errorf("whole-second end time: %s", b)
	}
}
