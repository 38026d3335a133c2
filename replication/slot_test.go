package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
)

func TestConn_CreatePhysicalSlot(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major})
		conn := connect(t, c)
		ctx := testContext(t)
		// "user" is a reserved word: the name must be quoted.
		const name = "user"
		if err := conn.CreatePhysicalSlot(ctx, name); err != nil {
			t.Fatalf("CreatePhysicalSlot: %v", err)
		}
		t.Run("ErrSlotExists", func(t *testing.T) {
			err := conn.CreatePhysicalSlot(ctx, name)
			if !errors.Is(err, ErrSlotExists) {
				t.Errorf("second CreatePhysicalSlot: %v, want ErrSlotExists", err)
			}
		})

		// RESERVE_WAL: the slot holds WAL from the start.
		slot, err := conn.ReadSlot(ctx, name)
		if err != nil {
			t.Fatalf("ReadSlot: %v", err)
		}
		want := c.QueryString(t, "select restart_lsn::text from pg_replication_slots where slot_name = $1", name)
		if slot.RestartLSN == 0 || slot.RestartLSN.String() != want {
			t.Errorf("ReadSlot restart LSN %s, pg_replication_slots %s", slot.RestartLSN, want)
		}
		wantTLI := int32(0)
		if major >= 15 {
			wantTLI = 1
		}
		if slot.Timeline != wantTLI || slot.Name != name {
			t.Errorf("ReadSlot = %+v, want timeline %d", slot, wantTLI)
		}

		if err := conn.DropSlot(ctx, name); err != nil {
			t.Fatalf("DropSlot: %v", err)
		}
		t.Run("ErrSlotNotFound", func(t *testing.T) {
			if err := conn.DropSlot(ctx, name); !errors.Is(err, ErrSlotNotFound) {
				t.Errorf("second DropSlot: %v, want ErrSlotNotFound", err)
			}
			if _, err := conn.ReadSlot(ctx, name); !errors.Is(err, ErrSlotNotFound) {
				t.Errorf("ReadSlot of a dropped slot: %v, want ErrSlotNotFound", err)
			}
		})
	})
}

// TestConn_ReadSlotSQL_ErrUnreachable: the ordinary connection
// ReadSlot opens on servers before 15 fails as Connect does, with
// ErrUnreachable and what to check, on one line; it gave pgconn's error
// alone.
func TestConn_ReadSlotSQL_ErrUnreachable(t *testing.T) {
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres connect_timeout=5", testio.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	c := &Conn{config: cfg}
	_, err = c.readSlotSQL(context.Background(), "hoard")
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("readSlotSQL to a closed port: %v, want ErrUnreachable", err)
	}
	if err == nil {
		return
	}
	msg := err.Error()
	if want := "check the node's host and port"; !strings.Contains(msg, want) {
		t.Errorf("%q: want the hint %q", msg, want)
	}
	if strings.ContainsAny(msg, "\n\t") {
		t.Errorf("%q: want one line without tabs", msg)
	}
}
