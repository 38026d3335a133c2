package archive

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hoardbackup/hoard/storage"
)

func TestParseTime(t *testing.T) {
	want := time.Date(2019, 7, 10, 12, 33, 12, 657815000, time.UTC)
	for _, s := range []string{
		"2019-07-10 14:33:12.657815+02:00", // PGHoard's end-time: str(datetime)
		"2019-07-10T14:33:12.657815+02:00",
		"2019-07-10T12:33:12.657815Z",
		"2019-07-10T12:33:12.657815+0000",
		"2019-07-10T12:33:12.657815",
	} {
		got, err := ParseTime(s)
		if err != nil {
			t.Errorf("ParseTime(%q): %v", s, err)
			continue
		}
		if !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, want %v", s, got, want)
		}
	}
	got, err := ParseTime("2021-07-30T13:56:48+00:00")
	if err != nil || !got.Equal(time.Date(2021, 7, 30, 13, 56, 48, 0, time.UTC)) {
		t.Errorf("ParseTime without fraction = %v, %v", got, err)
	}
	if _, err := ParseTime("yesterday"); err == nil {
		t.Error("ParseTime(yesterday) succeeded")
	}
}

func TestBackupInfo_Metadata(t *testing.T) {
	start := time.Date(2026, 11, 24, 3, 0, 0, 123000000, time.UTC)
	in := &BackupInfo{
		Format:          FormatBBv2,
		StartWALSegment: "000000010000000000000004",
		EndWALSegment:   "000000010000000000000005",
		StartTime:       start,
		EndTime:         start.Add(time.Minute),
		StartLSN:        0x4000028,
		EndLSN:          0x5000100,
		StartTimeline:   1,
		EndTimeline:     1,
		SystemID:        "7300000000000000001",
		WALSegmentSize:  16 << 20,
		PGVersion:       150004,
		TotalSizePlain:  1 << 30,
		TotalSizeEnc:    1 << 28,
		ChunkCount:      3,
		Site:            "default",
		Host:            "db1",
		BackupReason:    "requested",
		PGManifest:      true,
		EndXmin:         731,
		EndXmax:         735,
	}
	md := in.ToMetadata()
	for k, v := range map[string]string{MetaPGManifest: "true", MetaEndXmin: "731", MetaEndXmax: "735"} {
		if md[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, md[k], v)
		}
	}
	got, err := ParseBackupInfo("default/basebackup/2026-11-24_03-00_0.00000000.pghoard", 1234, md)
	if err != nil {
		t.Fatal(err)
	}
	want := *in
	want.Name = "2026-11-24_03-00_0"
	want.Key = "default/basebackup/2026-11-24_03-00_0.00000000.pghoard"
	want.StoredSize = 1234
	if diff := cmp.Diff(&want, got, cmpopts.IgnoreFields(BackupInfo{}, "Metadata")); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestParseBackupInfo_PGHoard(t *testing.T) {
	// Metadata as PGHoard writes it: no hoard-* keys, times in both forms.
	md := storage.Metadata{
		"format":            "pghoard-bb-v2",
		"start-wal-segment": "000000020000000100000003",
		"start-time":        "2021-07-30T13:56:48+00:00",
		"end-wal-segment":   "000000020000000100000004",
		"end-time":          "2021-07-30 14:33:12.657815+00:00",
		"total-size-plain":  "1000",
		"total-size-enc":    "500",
		"pg-version":        "130003",
	}
	b, err := ParseBackupInfo("s/basebackup/2021-07-30_13-56_0.00000000.pghoard", 10, md)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.StartTimeline, uint32(2); got != want {
		t.Errorf("StartTimeline = %d, want %d", got, want)
	}
	if got, want := b.StartLSN.String(), "1/3000000"; got != want {
		t.Errorf("StartLSN = %s, want %s", got, want)
	}
	if got, want := b.BackupReason, "scheduled"; got != want {
		t.Errorf("BackupReason = %s, want %s", got, want)
	}
	if b.EndTime.IsZero() || b.PGVersion != 130003 {
		t.Errorf("EndTime %v, PGVersion %d", b.EndTime, b.PGVersion)
	}
}

func TestParseBackupInfo_ErrBadValue(t *testing.T) {
	for _, md := range []storage.Metadata{
		{"start-time": "soon"},
		{"total-size-plain": "-1"},
		{"start-wal-segment": "nope"},
		{"hoard-start-lsn": "zz"},
		{"hoard-end-xmax": "many"},
	} {
		if _, err := ParseBackupInfo("k", 0, md); err == nil {
			t.Errorf("ParseBackupInfo(%v) succeeded", md)
		}
	}
}

// PGHoard writes times with Python's datetime.isoformat() and str(); its
// scheduler compares normalized-backup-time as a string, so the form must
// be Python's exactly.
func TestBackupInfo_MetadataTimeForms(t *testing.T) {
	at := func(h, m, s, ns int) time.Time { return time.Date(2026, 11, 24, h, m, s, ns, time.UTC) }
	b := &BackupInfo{
		StartTime:      at(3, 0, 1, 0),
		EndTime:        at(3, 4, 5, 657815000),
		DecisionTime:   at(2, 59, 59, 123456789),
		NormalizedTime: time.Date(2026, 11, 24, 4, 50, 0, 0, time.FixedZone("CET", 3600)),
	}
	want := map[string]string{
		MetaStartTime:            "2026-11-24T03:00:01+00:00",
		MetaEndTime:              "2026-11-24 03:04:05.657815+00:00",
		MetaBackupDecisionTime:   "2026-11-24T02:59:59.123456+00:00",
		MetaNormalizedBackupTime: "2026-11-24T03:50:00+00:00",
	}
	md := b.ToMetadata()
	for k, v := range want {
		if md[k] != v {
			t.Errorf("%s = %q, want %q", k, md[k], v)
		}
	}
	if got := strTime(at(3, 4, 5, 0)); got != "2026-11-24 03:04:05+00:00" {
		t.Errorf("strTime without microseconds = %q", got)
	}
}
