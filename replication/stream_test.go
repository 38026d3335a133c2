package replication

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestStandbyStatus_encode(t *testing.T) {
	s := StandbyStatus{Write: 0x0102030405060708, Flush: 2, Apply: 3, ReplyRequested: true}
	got := s.encode(pgEpoch.Add(time.Second))
	want := []byte{'r',
		1, 2, 3, 4, 5, 6, 7, 8,
		0, 0, 0, 0, 0, 0, 0, 2,
		0, 0, 0, 0, 0, 0, 0, 3,
		0, 0, 0, 0, 0, 0x0f, 0x42, 0x40,
		1}
	if !bytes.Equal(got, want) {
		t.Errorf("encode = %v\nwant %v", got, want)
	}
}

// receiveSegment streams from start until it holds the whole segment that
// begins there, answering keepalives, and returns its bytes and whether a
// keepalive came back after a status update asking for one.
func receiveSegment(t *testing.T, conn *Conn, start pglogrepl.LSN, segSize uint64) ([]byte, bool) {
	t.Helper()
	seg := make([]byte, 0, segSize)
	asked, answered := false, false
	deadline := time.Now().Add(testTimeout)
	for uint64(len(seg)) < segSize || !answered {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d bytes (keepalive answered: %v)", len(seg), segSize, answered)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		msg, err := conn.ReceiveMessage(ctx)
		cancel()
		if pgconn.Timeout(err) {
			continue
		}
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		pos := start + pglogrepl.LSN(len(seg))
		switch msg.Kind {
		case MessageXLogData:
			x := msg.XLogData
			if x.WALStart != pos && uint64(len(seg)) < segSize {
				t.Fatalf("XLogData at %s, want %s", x.WALStart, pos)
			}
			if room := int(segSize) - len(seg); room > 0 {
				seg = append(seg, x.WALData[:min(room, len(x.WALData))]...)
			}
			if !asked {
				// Ask for a keepalive once, reporting what we hold.
				p := start + pglogrepl.LSN(len(seg))
				if err := conn.SendStandbyStatus(testContext(t), StandbyStatus{Write: p, Flush: p, Apply: p, ReplyRequested: true}); err != nil {
					t.Fatalf("SendStandbyStatus: %v", err)
				}
				asked = true
			}
		case MessageKeepalive:
			if asked {
				answered = true
			}
			if msg.Keepalive.ReplyRequested {
				if err := conn.SendStandbyStatus(testContext(t), StandbyStatus{Write: pos, Flush: pos, Apply: pos}); err != nil {
					t.Fatalf("SendStandbyStatus: %v", err)
				}
			}
		}
	}
	return seg, answered
}

func TestConn_StartReplication(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
		conn := connect(t, c)
		ctx := testContext(t)
		segSize, err := conn.WALSegmentSize(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.CreatePhysicalSlot(ctx, "hoard"); err != nil {
			t.Fatal(err)
		}
		sys, err := conn.IdentifySystem(ctx)
		if err != nil {
			t.Fatal(err)
		}
		start := sys.XLogPos - sys.XLogPos%pglogrepl.LSN(segSize)
		if err := conn.StartReplication(ctx, StartOptions{Slot: "hoard", Start: start, Timeline: sys.Timeline}); err != nil {
			t.Fatalf("StartReplication: %v", err)
		}
		c.Exec(t, "create table t as select generate_series(1, 10000) as i")
		c.Exec(t, "select pg_switch_wal()")

		seg, _ := receiveSegment(t, conn, start, segSize)
		file := filepath.Join(c.DataDir, "pg_wal", segmentName(sys.Timeline, start, segSize))
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(seg, want) {
			t.Fatalf("streamed segment differs from %s", file)
		}

		end := start + pglogrepl.LSN(segSize)
		if err := conn.SendStandbyStatus(ctx, StandbyStatus{Write: end, Flush: end, Apply: end}); err != nil {
			t.Fatal(err)
		}
		if err := conn.StopReplication(ctx); err != nil {
			t.Fatalf("StopReplication: %v", err)
		}
		// The slot moved to the flush position we reported.
		slot, err := conn.ReadSlot(ctx, "hoard")
		if err != nil {
			t.Fatalf("ReadSlot: %v", err)
		}
		if slot.RestartLSN != end {
			t.Errorf("slot restart LSN %s after flush feedback %s", slot.RestartLSN, end)
		}
	})
}

func TestConn_StartReplication_EndOfTimeline(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := promoted(t, major)
		conn := connect(t, c)
		ctx := testContext(t)
		_, history, err := conn.TimelineHistory(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(string(history))
		if len(fields) < 2 {
			t.Fatalf("history %q", history)
		}
		switchLSN, _ := parseLSN(t, fields[1])
		segSize, err := conn.WALSegmentSize(ctx)
		if err != nil {
			t.Fatal(err)
		}

		// Streaming timeline 1 ends at the switch point.
		start := switchLSN - switchLSN%pglogrepl.LSN(segSize)
		if err := conn.StartReplication(ctx, StartOptions{Start: start, Timeline: 1}); err != nil {
			t.Fatalf("StartReplication: %v", err)
		}
		pos := start
		for {
			msg, err := conn.ReceiveMessage(ctx)
			var eot *EndOfTimeline
			if errors.As(err, &eot) {
				if eot.NextTimeline != 2 || eot.SwitchLSN != switchLSN {
					t.Errorf("EndOfTimeline = %+v, want timeline 2 at %s", eot, switchLSN)
				}
				break
			}
			if err != nil {
				t.Fatalf("ReceiveMessage: %v", err)
			}
			if msg.Kind == MessageXLogData {
				pos = msg.XLogData.WALStart + pglogrepl.LSN(len(msg.XLogData.WALData))
			}
		}
		if pos != switchLSN {
			t.Errorf("timeline 1 streamed up to %s, switch at %s", pos, switchLSN)
		}

		t.Run("AtSwitchPoint", func(t *testing.T) {
			// Exactly at the end of timeline 1, the server skips COPY.
			err := conn.StartReplication(ctx, StartOptions{Start: switchLSN, Timeline: 1})
			eot, ok := IsEndOfTimeline(err)
			if !ok || eot.NextTimeline != 2 || eot.SwitchLSN != switchLSN {
				t.Errorf("StartReplication at the switch point: %v", err)
			}
		})

		// The connection accepts commands again.
		sys, err := conn.IdentifySystem(ctx)
		if err != nil || sys.Timeline != 2 {
			t.Errorf("IdentifySystem = %+v, %v; want timeline 2", sys, err)
		}
	})
}
