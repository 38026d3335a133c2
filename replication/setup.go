package replication

import (
	"context"
	"fmt"
	"strconv"
)

// MinServerVersion is the oldest PostgreSQL hoard backs up: 13, the first
// with backup manifests. MaxServerVersion is the newest major it was
// tested with; a newer one may work.
const (
	MinServerVersion = 130000
	MaxServerVersion = 189999
)

// Setup is what a server's settings say about backing it up: the
// settings `hoard check` reports, read over an ordinary connection.
type Setup struct {
	Server
	WALLevel      string // minimal, replica or logical
	MaxWALSenders int
	WALSenders    int // WAL senders running now (pg_stat_replication)
	MaxSlots      int // max_replication_slots
	Slots         int // replication slots that exist
	// SlotType is the type of the slot Setup was asked about ("physical",
	// "logical"), "" when it does not exist or none was asked about.
	SlotType string
	// SlotActive says whether a process streams from that slot now
	// (pg_replication_slots.active). SlotRetained is the WAL the server
	// keeps for it, from its restart_lsn to the server's position (a
	// standby's: the last replayed), -1 when unknown (no such slot, or
	// no restart_lsn).
	SlotActive     bool
	SlotRetained   int64
	ArchiveMode    string // off, on or always
	ArchiveCommand string // "" when not set, or not visible to the role
	DataChecksums  bool
	InRecovery     bool // pg_is_in_recovery(): the server is a standby
}

// setupQuery reads Setup; $1 is the slot name ("" for none). The
// settings and views it reads are visible to any role.
const setupQuery = `SELECT current_setting('server_version_num'),
	(SELECT system_identifier::text FROM pg_control_system()),
	current_setting('wal_level'),
	current_setting('max_wal_senders'),
	(SELECT count(*) FROM pg_stat_replication)::text,
	current_setting('max_replication_slots'),
	(SELECT count(*) FROM pg_replication_slots)::text,
	coalesce((SELECT slot_type FROM pg_replication_slots WHERE slot_name = $1), ''),
	current_setting('archive_mode'),
	coalesce(current_setting('archive_command', true), ''),
	current_setting('data_checksums'),
	pg_is_in_recovery()::text,
	coalesce((SELECT active::text FROM pg_replication_slots WHERE slot_name = $1), ''),
	coalesce((SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
		restart_lsn)::bigint::text FROM pg_replication_slots WHERE slot_name = $1), '')`

// QuerySetup connects to the server connString names with an ordinary
// connection (it takes no WAL sender) and reads its Setup; slot is the
// replication slot to look for ("" for none). Connection errors are
// Connect's, with the same hints.
func QuerySetup(ctx context.Context, connString, slot string) (Setup, error) {
	pg, err := connectSQL(ctx, connString)
	if err != nil {
		return Setup{}, err
	}
	defer pg.Close(context.WithoutCancel(ctx))
	rr := pg.ExecParams(ctx, setupQuery, [][]byte{[]byte(slot)}, nil, nil, nil)
	var row []string
	for rr.NextRow() {
		for _, v := range rr.Values() {
			row = append(row, string(v))
		}
	}
	if _, err := rr.Close(); err != nil {
		return Setup{}, fmt.Errorf("read settings: %w", err)
	}
	if len(row) != 14 {
		return Setup{}, fmt.Errorf("read settings: %w: want one row of 14 columns", ErrProtocol)
	}
	s := Setup{WALLevel: row[2], SlotType: row[7], ArchiveMode: row[8], ArchiveCommand: row[9],
		DataChecksums: row[10] == "on", InRecovery: row[11] == "true", SlotActive: row[12] == "true", SlotRetained: -1}
	if row[13] != "" {
		if s.SlotRetained, err = strconv.ParseInt(row[13], 10, 64); err != nil {
			return Setup{}, fmt.Errorf("read settings: WAL kept for slot %s %q: %w", slot, row[13], err)
		}
	}
	if s.SystemID, err = strconv.ParseUint(row[1], 10, 64); err != nil {
		return Setup{}, fmt.Errorf("read settings: system_identifier %q: %w", row[1], err)
	}
	for i, p := range []*int{&s.Version, nil, nil, &s.MaxWALSenders, &s.WALSenders, &s.MaxSlots, &s.Slots} {
		if p == nil {
			continue
		}
		if *p, err = strconv.Atoi(row[i]); err != nil {
			return Setup{}, fmt.Errorf("read settings: column %d %q: %w", i+1, row[i], err)
		}
	}
	return s, nil
}

// CheckVersion says whether hoard supports the server's version: an
// error for one before MinServerVersion, and a warning (ok false, err
// nil) for one newer than MaxServerVersion.
func (s Setup) CheckVersion() (ok bool, err error) {
	if s.Version < MinServerVersion {
		return false, fmt.Errorf("PostgreSQL %s is not supported: hoard needs 13 or later (backup manifests); upgrade the server", s.VersionText())
	}
	return s.Version <= MaxServerVersion, nil
}

// CheckWALLevel returns an error when wal_level is minimal: then the WAL
// holds too little to restore a backup and no WAL sender runs.
func (s Setup) CheckWALLevel() error {
	if s.WALLevel == "minimal" {
		return fmt.Errorf("wal_level is minimal: set wal_level = replica in postgresql.conf and restart PostgreSQL")
	}
	return nil
}

// CheckSenders returns an error when max_wal_senders leaves fewer than
// need WAL senders free, each connection of hoard's taking one (the WAL
// stream, each running basebackup).
func (s Setup) CheckSenders(need int) error {
	free := s.MaxWALSenders - s.WALSenders
	if free >= need {
		return nil
	}
	return fmt.Errorf("max_wal_senders is %d and %d are in use, hoard needs %d free: raise max_wal_senders in postgresql.conf and restart PostgreSQL",
		s.MaxWALSenders, s.WALSenders, need)
}

// CheckSlot returns, for the replication slot name Setup was read with,
// whether it exists, and an error when it can neither be used nor
// created: a logical slot of that name, or no free max_replication_slots.
func (s Setup) CheckSlot(name string) (exists bool, err error) {
	switch {
	case s.SlotType == "physical":
		return true, nil
	case s.SlotType != "":
		return false, fmt.Errorf("replication slot %s is a %s slot, hoard needs a physical one: drop it (pg_drop_replication_slot) or name another slot in the node's slot", name, s.SlotType)
	case s.Slots >= s.MaxSlots:
		return false, fmt.Errorf("replication slot %s does not exist and cannot be created: max_replication_slots is %d and %d exist; raise max_replication_slots in postgresql.conf and restart PostgreSQL",
			name, s.MaxSlots, s.Slots)
	}
	return false, nil
}

// VersionText prints the server's version as PostgreSQL names it (15.4).
func (s Setup) VersionText() string {
	return strconv.Itoa(s.Version/10000) + "." + strconv.Itoa(s.Version%10000)
}
