package archive

import (
	"bytes"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hoardbackup/hoard/storage"
)

// fuzzMetadata turns "key=value" lines into metadata, so that the fuzzer
// can shape both keys and values.
func fuzzMetadata(s string) storage.Metadata {
	md := storage.Metadata{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			md[k] = v
		}
	}
	return md
}

func metadataText(md storage.Metadata) string {
	var b strings.Builder
	for k, v := range md {
		b.WriteString(k + "=" + v + "\n")
	}
	return b.String()
}

// FuzzParseBackupInfo checks that ParseBackupInfo never panics on
// metadata from storage, and that what it accepts survives a trip through
// ToMetadata: parsing the written metadata again gives the same backup.
func FuzzParseBackupInfo(f *testing.F) {
	f.Add("s/basebackup/2021-07-30_13-56_0.00000000.pghoard", metadataText(storage.Metadata{
		"format": FormatBBv2, "start-wal-segment": "000000020000000100000003",
		"start-time": "2021-07-30T13:56:48+00:00", "end-wal-segment": "000000020000000100000004",
		"end-time": "2021-07-30 14:33:12.657815+00:00", "total-size-plain": "1000",
		"total-size-enc": "500", "pg-version": "130003", "backup-reason": "requested",
		"backup-decision-time": "2021-07-30T13:56:00Z", "normalized-backup-time": "2021-07-30T13:00:00+00:00",
		"compression-algorithm": "snappy", "encryption-key-id": "k1", "host": "db1", "site": "default",
	}))
	f.Add("default/basebackup/2026-11-24_03-00_0.00000000.pghoard", metadataText((&BackupInfo{
		Format: FormatBBv2, StartWALSegment: "000000010000000000000004", EndWALSegment: "000000010000000000000005",
		StartTime: time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC), StartLSN: 0x4000028, EndLSN: 0x5000100,
		StartTimeline: 1, EndTimeline: 1, SystemID: "7300000000000000001", WALSegmentSize: 1 << 20,
		PGVersion: 180000, TotalSizePlain: 1 << 30, ChunkCount: 3,
	}).ToMetadata()))
	f.Add("k", "start-time=2019-07-10 14:33:12.657815+02:00\nhoard-wal-segment-size=16777216\n")
	f.Add("k", "hoard-start-lsn=0/0\nhoard-start-timeline=4294967296\n")
	f.Fuzz(func(t *testing.T, key, text string) {
		b, err := ParseBackupInfo(key, 1, fuzzMetadata(text))
		if err != nil {
			return
		}
		b2, err := ParseBackupInfo(key, 1, b.ToMetadata())
		if err != nil {
			t.Fatalf("metadata written for an accepted backup does not parse: %v", err)
		}
		b3, err := ParseBackupInfo(key, 1, b2.ToMetadata())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(b2, b3, cmpopts.IgnoreFields(BackupInfo{}, "Metadata")); diff != "" {
			t.Fatalf("metadata round trip is not stable (-first +second):\n%s", diff)
		}
	})
}

// FuzzParseManifest checks that ParseManifest never panics on a control
// tar's JSON, and that Marshal of what it accepts parses back the same.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"backup_start_time":"2021-07-30T13:56:48.123456Z","backup_start_wal_segment":"000000010000000000000004",` +
		`"backup_end_time":"2021-07-30 14:33:12+02:00","backup_end_wal_segment":"000000010000000000000005","pgdata":"/var/lib/pgsql/data",` +
		`"pghoard_object":"basebackup","pghoard_version":"2.1.0","host":"db1","tablespaces":{"nstest1":{"path":"/ts1","oid":16385}},` +
		`"chunks":[{"chunk_filename":"b/b.00000001.pghoard","input_size":20480,"result_size":1745,"files":["pgdata/pg_notify"]}]}`))
	f.Add([]byte(`{"backup_start_time":null,"chunks":[],"manifest":{"start":"x","snapshot_result":{"files":0}},"delta_stats":{"hashes":{}}}`))
	f.Add([]byte(`{"hoard":{"start_lsn":"0/4000028","end_lsn":"0/5000100","start_timeline":1,"wal_segment_size":16777216,"pg_manifest":true}}`))
	f.Add([]byte(`{"tablespaces":{"a":{"oid":-1}}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"chunks":[{"chunk_filename":"../../xlog/000000010000000000000002","input_size":1}]}`))
	f.Add([]byte(`{"tablespaces":{"ts":{"path":"/srv/../etc","oid":16400}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if m.Validate() == nil {
			checkValid(t, m)
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of an accepted manifest: %v", err)
		}
		m2, err := ParseManifest(out)
		if err != nil {
			t.Fatalf("marshalled manifest does not parse: %v\n%s", err, out)
		}
		out2, err := m2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("manifest round trip is not stable:\n%s\n%s", out, out2)
		}
	})
}

// checkValid checks what Validate promises of a manifest it accepts.
func checkValid(t *testing.T, m *Manifest) {
	t.Helper()
	l := Layout{Prefix: "site"}
	dir := l.Dir(BasebackupChunkDir)
	for _, c := range m.Chunks {
		key := l.ChunkKey(c.ChunkFilename)
		if !strings.HasPrefix(path.Clean(key), dir) || path.Clean(key) != key || c.InputSize <= 0 {
			t.Fatalf("valid chunk %q has key %q outside %s (input_size %d)", c.ChunkFilename, key, dir, c.InputSize)
		}
	}
	for name, ts := range m.Tablespaces {
		if strings.Contains(name, "/") || name == ".." || name == "." || name == "" {
			t.Fatalf("valid tablespace name %q", name)
		}
		if ts.Path != "" && (!filepath.IsAbs(ts.Path) || filepath.Clean(ts.Path) != ts.Path) {
			t.Fatalf("valid tablespace %q path %q", name, ts.Path)
		}
	}
}

// FuzzReadControl checks that reading a control tar never panics, that
// what it accepts has a valid manifest, and that it reads the input to
// its end (so the codec's checks at EOF always run).
func FuzzReadControl(f *testing.F) {
	m := &Manifest{Chunks: []ManifestChunk{{ChunkFilename: "b/b.00000001.pghoard", InputSize: 10240}},
		Tablespaces: map[string]ManifestTablespace{"ts": {Path: "/srv/ts", OID: 16400}}}
	var b bytes.Buffer
	controlTar(f, &b, m, ControlBackupLabel, 100)
	f.Add(b.Bytes())
	f.Add(b.Bytes()[:700])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		c, err := ReadControl(r, nil)
		if err != nil {
			return
		}
		if r.Len() != 0 || c.Size != int64(len(data)) {
			t.Fatalf("accepted after reading %d of %d bytes", c.Size, len(data))
		}
		if err := c.Manifest.Validate(); err != nil {
			t.Fatalf("accepted an invalid manifest: %v", err)
		}
		checkValid(t, c.Manifest)
	})
}
