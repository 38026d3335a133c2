package restore

import (
	"context"
	"testing"
)

// TestCheckPromotion_NotAsked: the history files after recovery's
// timeline are looked at only where hoard writes wal-fetch as
// restore_command and the restored server promotes at the end of
// recovery; otherwise checkPromotion reads nothing (a nil archive).
func TestCheckPromotion_NotAsked(t *testing.T) {
	fetch := &WALFetch{}
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"RestoreCommand", Options{RestoreCommand: "cp /a/%f %p", WALFetch: fetch}},
		{"NoWALFetch", Options{}},
		{"Standby", Options{Standby: true, WALFetch: fetch}},
		{"StandbyPause", Options{Standby: true, WALFetch: fetch, Target: Target{Immediate: true}}},
		{"Pause", Options{WALFetch: fetch, Target: Target{Immediate: true}, TargetAction: "pause"}},
		{"Shutdown", Options{WALFetch: fetch, Target: Target{Immediate: true}, TargetAction: "shutdown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.o.checkPromotion(context.Background(), nil, hoardBackup("b1", 1, 0x1000100, 0), 1); err != nil {
				t.Fatal(err)
			}
		})
	}
}
