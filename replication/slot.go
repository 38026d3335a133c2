package replication

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// Slot is what the server knows of a physical replication slot.
type Slot struct {
	Name       string
	RestartLSN pglogrepl.LSN // oldest WAL the slot keeps; 0 when it keeps none yet
	// Timeline is the timeline of RestartLSN. Servers before 15 have no
	// READ_REPLICATION_SLOT and do not tell it: then it is 0.
	Timeline int32
}

// CreatePhysicalSlot creates a physical replication slot that reserves WAL
// at once (CREATE_REPLICATION_SLOT name PHYSICAL RESERVE_WAL), so the
// server keeps every segment from this moment on, before streaming starts.
// It returns an error wrapping ErrSlotExists when the name is taken.
func (c *Conn) CreatePhysicalSlot(ctx context.Context, name string) error {
	_, err := c.exec(ctx, "CREATE_REPLICATION_SLOT "+quoteIdent(name)+" PHYSICAL RESERVE_WAL")
	if isCode(err, codeDuplicateObject) {
		return fmt.Errorf("create replication slot %s: %w: %w", name, ErrSlotExists, err)
	}
	if err != nil {
		return fmt.Errorf("create replication slot %s: %w", name, err)
	}
	return nil
}

// DropSlot drops a replication slot (DROP_REPLICATION_SLOT). It returns an
// error wrapping ErrSlotNotFound when there is none of that name, and fails
// when the slot is in use.
func (c *Conn) DropSlot(ctx context.Context, name string) error {
	_, err := c.exec(ctx, "DROP_REPLICATION_SLOT "+quoteIdent(name))
	if isCode(err, codeUndefinedObject) {
		return fmt.Errorf("drop replication slot %s: %w: %w", name, ErrSlotNotFound, err)
	}
	if err != nil {
		return fmt.Errorf("drop replication slot %s: %w", name, err)
	}
	return nil
}

// ReadSlot returns a slot's restart position. From PostgreSQL 15 it uses
// READ_REPLICATION_SLOT on this connection; before, it asks
// pg_replication_slots over a separate, ordinary SQL connection with the
// same connection settings (the user then needs to be allowed to connect
// to the database too), and Slot.Timeline stays 0. It returns an error
// wrapping ErrSlotNotFound when there is no such slot.
func (c *Conn) ReadSlot(ctx context.Context, name string) (Slot, error) {
	if c.ServerVersion() >= 150000 {
		return c.readSlotCommand(ctx, name)
	}
	return c.readSlotSQL(ctx, name)
}

// readSlotCommand uses READ_REPLICATION_SLOT (PostgreSQL 15+): one row of
// slot_type, restart_lsn, restart_tli, all NULL when the slot does not
// exist.
func (c *Conn) readSlotCommand(ctx context.Context, name string) (Slot, error) {
	results, err := c.exec(ctx, "READ_REPLICATION_SLOT "+quoteIdent(name))
	if err != nil {
		return Slot{}, fmt.Errorf("read replication slot %s: %w", name, err)
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 3 {
		return Slot{}, fmt.Errorf("read replication slot %s: %w: want one row of three columns", name, ErrProtocol)
	}
	row := results[0].Rows[0]
	if row[0] == nil {
		return Slot{}, fmt.Errorf("read replication slot %s: %w", name, ErrSlotNotFound)
	}
	s := Slot{Name: name}
	if row[1] != nil {
		if s.RestartLSN, err = pglogrepl.ParseLSN(string(row[1])); err != nil {
			return Slot{}, fmt.Errorf("read replication slot %s: parse restart_lsn: %w", name, err)
		}
	}
	if row[2] != nil {
		tli, err := strconv.ParseInt(string(row[2]), 10, 32)
		if err != nil {
			return Slot{}, fmt.Errorf("read replication slot %s: parse restart_tli: %w", name, err)
		}
		s.Timeline = int32(tli)
	}
	return s, nil
}

// readSlotSQL reads pg_replication_slots over an ordinary connection, for
// servers before 15. Its connection error is wrapped as Connect's are:
// this connection opens a database (libpq's default is the user's name,
// which a replication role seldom has), so it can fail where the
// replication connection did not.
func (c *Conn) readSlotSQL(ctx context.Context, name string) (Slot, error) {
	pg, err := pgconn.ConnectConfig(ctx, c.config.Copy())
	if err != nil {
		return Slot{}, fmt.Errorf("read replication slot %s: %w", name, ConnErrorFor(err, c.config))
	}
	defer pg.Close(context.WithoutCancel(ctx))
	rr := pg.ExecParams(ctx, "select restart_lsn::text from pg_replication_slots where slot_name = $1 and slot_type = 'physical'",
		[][]byte{[]byte(name)}, nil, nil, nil)
	var rows [][]byte
	for rr.NextRow() {
		v := rr.Values()[0]
		if v != nil {
			v = append([]byte(nil), v...)
		}
		rows = append(rows, v)
	}
	if _, err := rr.Close(); err != nil {
		return Slot{}, fmt.Errorf("read replication slot %s: %w", name, err)
	}
	if len(rows) == 0 {
		return Slot{}, fmt.Errorf("read replication slot %s: %w", name, ErrSlotNotFound)
	}
	s := Slot{Name: name}
	if rows[0] != nil {
		if s.RestartLSN, err = pglogrepl.ParseLSN(string(rows[0])); err != nil {
			return Slot{}, fmt.Errorf("read replication slot %s: parse restart_lsn: %w", name, err)
		}
	}
	return s, nil
}
