package replication

import (
	"strings"
	"testing"
)

func TestSetup_Checks(t *testing.T) {
	good := Setup{Server: Server{Version: 150004}, WALLevel: "replica", MaxWALSenders: 10, WALSenders: 1, MaxSlots: 10, Slots: 1}
	for _, tc := range []struct {
		name string
		s    func(s *Setup)
		want string // substring of the first error of the checks, "" for none
	}{
		{"OK", func(*Setup) {}, ""},
		{"OKSlotExists", func(s *Setup) { s.SlotType = "physical"; s.Slots = 10 }, ""},
		{"ErrVersion", func(s *Setup) { s.Version = 120010 }, "PostgreSQL 12.10 is not supported"},
		{"ErrWALLevel", func(s *Setup) { s.WALLevel = "minimal" }, "set wal_level = replica"},
		{"ErrNoSenders", func(s *Setup) { s.MaxWALSenders = 0; s.WALSenders = 0 }, "max_wal_senders is 0 and 0 are in use, hoard needs 2 free"},
		{"ErrSendersInUse", func(s *Setup) { s.WALSenders = 9 }, "max_wal_senders is 10 and 9 are in use"},
		{"ErrLogicalSlot", func(s *Setup) { s.SlotType = "logical" }, "is a logical slot"},
		{"ErrNoSlotRoom", func(s *Setup) { s.Slots = 10 }, "raise max_replication_slots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.s(&s)
			_, errVersion := s.CheckVersion()
			_, errSlot := s.CheckSlot("hoard")
			got := ""
			for _, err := range []error{errVersion, s.CheckWALLevel(), s.CheckSenders(2), errSlot} {
				if err != nil && got == "" {
					got = err.Error()
				}
			}
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("checks = %q, want %q", got, tc.want)
			}
		})
	}
	if ok, err := (Setup{Server: Server{Version: 190001}}).CheckVersion(); ok || err != nil {
		t.Errorf("CheckVersion of 19.1 = %v, %v; want a warning (false, nil)", ok, err)
	}
}
