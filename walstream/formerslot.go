package walstream

import (
	"fmt"
	"time"
)

// FormerSlot is the receiver's creation of its replication slot on a
// server that lacked it after WAL had been streamed through the slot
// before: in this Run, or in an earlier one that left WAL in the spool.
// Physical slots are not replicated, so after a failover or switchover
// whose promoted server the address moved to, the server streamed from
// before (the former primary, still running, restarted as a standby or
// rebuilt from a copy of itself) may still have the slot. Nothing
// streams from it any more: it keeps that server's WAL from its
// restart_lsn on, without bound unless max_slot_wal_keep_size is set,
// until it is dropped there. The receiver cannot reach that server (the
// address names the new one), so it can only say so.
type FormerSlot struct {
	// Slot is the slot's name, and At when it was created.
	Slot string
	At   time.Time
	// Timeline is the server's timeline when the slot was created, and
	// StreamedTimeline the timeline of the WAL streamed before: the
	// newest in the spool, or the one this Run streamed last. A
	// Timeline above it says the server was promoted since.
	Timeline         int32
	StreamedTimeline int32
}

// Hint says what the operator does about f.
func (f FormerSlot) Hint() string {
	return fmt.Sprintf("the server streamed from before (after a failover or switchover, the former primary, also as a standby or rebuilt) "+
		"may still have slot %q, which keeps its WAL until it is dropped: there, run SELECT pg_drop_replication_slot('%s')",
		f.Slot, f.Slot)
}

// noteSlotCreated records and logs, once for this creation, that the
// slot was created on a server of the database system streamed before
// (changed is false), sys, on its timeline tli, when WAL of sys had been
// streamed through the slot before: in this Run, or by an earlier one
// that left WAL in the spool (spooled, the newest timeline there, 0 when
// none; changeSystem has checked that it is WAL of sys). The first slot
// of a new site, and the slot created again after a change of database
// system (pg_upgrade: the old cluster no longer runs), leave nothing
// behind worth a warning.
func (r *Receiver) noteSlotCreated(sys string, tli int32, spooled uint32, changed bool) {
	if changed {
		return
	}
	st := r.Status()
	streamed := int32(spooled)
	if st.Streamed && st.SystemID == sys {
		streamed = max(streamed, st.Timeline)
	}
	if streamed == 0 {
		return
	}
	f := &FormerSlot{Slot: r.opts.Slot, At: time.Now(), Timeline: tli, StreamedTimeline: streamed}
	r.update(func(s *Status) { s.FormerSlot = f })
	r.log.Warn().Str("slot", f.Slot).Int32(logTLI, tli).Int32("streamed_tli", streamed).Str("hint", f.Hint()).
		Msg("created the replication slot on a server that lacked it, though WAL was streamed through it before: the server streamed from before may still have it, keeping its WAL")
}
