package command

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

func testBackups(t *testing.T) []*archive.BackupInfo {
	t.Helper()
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	hoard := &archive.BackupInfo{
		Format: archive.FormatBBv2, StartWALSegment: "000000010000000000000004", EndWALSegment: "000000010000000000000005",
		StartTime: start, EndTime: start.Add(time.Minute), StartLSN: 0x4000028, EndLSN: 0x5000100,
		StartTimeline: 1, EndTimeline: 1, TotalSizePlain: 3 << 30, TotalSizeEnc: 1 << 30, PGVersion: 150004,
	}
	h, err := archive.ParseBackupInfo("s/basebackup/2026-01-02_03-00_0.00000000.pghoard", 2048, hoard.ToMetadata())
	if err != nil {
		t.Fatal(err)
	}
	// As PGHoard writes it: no LSNs, no total-size-enc.
	p, err := archive.ParseBackupInfo("s/basebackup/2021-07-30_13-56_0", 4096, storage.Metadata{
		"format": "pghoard-bb-v2", "start-wal-segment": "000000020000000100000003",
		"start-time": "2021-07-30T13:56:48+00:00", "end-time": "2021-07-30 14:33:12.657815+00:00",
		"total-size-plain": "1000",
	})
	if err != nil {
		t.Fatal(err)
	}
	return []*archive.BackupInfo{p, h}
}

func TestWriteBackupsTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeBackupsTable(&b, testBackups(t), true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Basebackup", "2026-01-02_03-00_0", "1.0 GiB", "3.0 GiB", "2026-01-02T03:00:00Z", "2026-01-02T03:01:00Z",
		"0/4000028", "0/5000100", "2021-07-30_13-56_0", "4.0 KiB", "1000 B", "1/3000000",
		"metadata: start-wal-segment=000000020000000100000003",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteBackupsJSON(t *testing.T) {
	var b bytes.Buffer
	if err := writeBackupsJSON(&b, testBackups(t)); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d backups", len(got))
	}
	h := got[1]
	if h["name"] != "2026-01-02_03-00_0" || h["start_lsn"] != "0/4000028" || h["end_lsn"] != "0/5000100" ||
		h["end_wal_segment"] != "000000010000000000000005" || h["total_size_enc"] != float64(1<<30) ||
		h["end_time"] != "2026-01-02T03:01:00Z" {
		t.Errorf("hoard backup: %v", h)
	}
	if md, ok := got[0]["metadata"].(map[string]any); !ok || md["format"] != "pghoard-bb-v2" {
		t.Errorf("metadata: %v", got[0]["metadata"])
	}
	var empty bytes.Buffer
	if err := writeBackupsJSON(&empty, nil); err != nil || strings.TrimSpace(empty.String()) != "[]" {
		t.Errorf("no backups: %q, %v", empty.String(), err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %s, want %s", n, got, want)
		}
	}
}
