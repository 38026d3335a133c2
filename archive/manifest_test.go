package archive

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The manifest's times as PGHoard writes them: backup_start_time is
// backup_label's START TIME re-rendered by isoformat (a string: "+00:00"),
// backup_end_time a datetime ("Z").
func TestManifest_MarshalTimes(t *testing.T) {
	m := &Manifest{
		BackupStartTime: LabelTime{time.Date(2026, 11, 24, 3, 0, 1, 0, time.UTC)},
		BackupEndTime:   ManifestTime{time.Date(2026, 11, 24, 3, 4, 5, 657815000, time.UTC)},
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"backup_start_time":"2026-11-24T03:00:01+00:00"`, `"backup_end_time":"2026-11-24T03:04:05.657815Z"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("manifest lacks %s:\n%s", want, b)
		}
	}
	back, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if !back.BackupStartTime.Equal(m.BackupStartTime.Time) || !back.BackupEndTime.Equal(m.BackupEndTime.Time) {
		t.Errorf("round trip: %v, %v", back.BackupStartTime, back.BackupEndTime)
	}
	m.BackupEndTime = ManifestTime{time.Date(2026, 11, 24, 3, 4, 5, 0, time.UTC)}
	if b, _ := m.Marshal(); !strings.Contains(string(b), `"backup_end_time":"2026-11-24T03:04:05Z"`) {
		t.Errorf("whole-second end time: %s", b)
	}
}

// TestParseManifest_Bounded: a manifest's decoded size stays a small
// multiple of its JSON whatever the JSON holds: millions of file names
// are not kept, and past the limits on chunks and tablespaces the parse
// stops with ErrControlLimit.
func TestParseManifest_Bounded(t *testing.T) {
	many := func(head, item, tail string, n int) []byte {
		return []byte(head + strings.Repeat(item+",", n-1) + item + tail)
	}
	t.Run("Files", func(t *testing.T) {
		const n = 2 << 20
		data := many(`{"chunks":[{"chunk_filename":"b/b.00000001.pghoard","input_size":1,"files":[`, `""`, `]}]}`, n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m, err := ParseManifest(data)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Chunks) != 1 || m.Chunks[0].InputSize != 1 {
			t.Fatalf("chunks %+v", m.Chunks)
		}
		// Kept as strings, the 2 Mi names took 16 bytes each, over five
		// times the JSON, and as much again while the slice grew; kept
		// as hashes (NameSet), 4 bytes each, allocated once.
		if m.Chunks[0].Names.Len() != 1 || !m.Chunks[0].Names.Has("") {
			t.Errorf("names kept: %d", m.Chunks[0].Names.Len())
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*uint64(len(data))+4*n {
			t.Errorf("parsing %d bytes of JSON allocated %d", len(data), alloc)
		}
	})
	for _, tt := range []struct {
		name       string
		head, item string
		tail       string
		limit      *int
	}{
		{"ErrChunks", `{"chunks":[`, `{}`, `]}`, &maxManifestChunks},
		{"ErrTablespaces", `{"tablespaces":{`, `"ts%d":{}`, `}}`, &maxManifestTablespaces},
	} {
		t.Run(tt.name, func(t *testing.T) {
			old := *tt.limit
			*tt.limit = 100
			defer func() { *tt.limit = old }()
			items := make([]string, 101)
			for i := range items {
				items[i] = tt.item
				if strings.Contains(tt.item, "%d") {
					items[i] = fmt.Sprintf(tt.item, i)
				}
			}
			data := []byte(tt.head + strings.Join(items, ",") + tt.tail)
			if _, err := ParseManifest(data); !errors.Is(err, ErrControlLimit) {
				t.Fatalf("ParseManifest of 101 = %v, want ErrControlLimit", err)
			}
			data = []byte(tt.head + strings.Join(items[:100], ",") + tt.tail)
			if _, err := ParseManifest(data); err != nil {
				t.Fatalf("ParseManifest of 100 = %v", err)
			}
		})
	}
}

// TestParseManifest_Shapes: chunks and tablespaces may be null (absent) or
// empty; any other type is refused, naming the field.
func TestParseManifest_Shapes(t *testing.T) {
	for _, tt := range []struct {
		name, data, err string
		chunks, ts      bool // non-nil
	}{
		{name: "Null", data: `{"chunks":null,"tablespaces":null}`},
		{name: "Empty", data: `{"chunks":[],"tablespaces":{}}`, chunks: true, ts: true},
		{name: "ErrChunksObject", data: `{"chunks":{}}`, err: "chunks is not an array"},
		{name: "ErrChunksString", data: `{"chunks":"x"}`, err: "chunks is not an array"},
		{name: "ErrTablespacesArray", data: `{"tablespaces":[]}`, err: "tablespaces is not an object"},
		{name: "ErrTablespacesNumber", data: `{"tablespaces":1}`, err: "tablespaces is not an object"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(tt.data))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseManifest(%s) = %v, want %q", tt.data, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (m.Chunks != nil) != tt.chunks || (m.Tablespaces != nil) != tt.ts {
				t.Errorf("chunks %#v tablespaces %#v", m.Chunks, m.Tablespaces)
			}
		})
	}
}
