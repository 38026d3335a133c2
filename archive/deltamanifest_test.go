package archive

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
)

// deltaManifestOf returns a delta manifest whose snapshot lists n files
// as "{}", three bytes each.
func deltaManifestOf(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"snapshot_result":{"state":{"files":[`)
	b.Write(bytes.Repeat([]byte(`{},`), n-1))
	b.WriteString(`{}]}}}`)
	return b.Bytes()
}

// A delta manifest of entries of a few bytes each is refused past
// MaxDeltaEntries entries (lowered here to 65536), its memory bounded by
// that count, by restore's parse (ParseDelta) and by retention's and
// verify's (DeltaRefs). Before, this 16 MiB manifest of "{}" entries (5.6
// million) allocated GiBs in each (64 MiB of them over 9 GiB in
// ParseDelta, 5 GiB in DeltaRefs); a 256 MiB one, which the control
// object's limits allow, more than most machines have.
func TestDeltaManifest_ErrTooManyEntries(t *testing.T) {
	old := maxDeltaEntries
	maxDeltaEntries = 1 << 16
	t.Cleanup(func() { maxDeltaEntries = old })
	m := &Manifest{DeltaManifest: deltaManifestOf(16 << 20 / 3)}
	for _, tt := range []struct {
		name  string
		parse func(*Manifest) error
	}{
		{"ParseDelta", func(m *Manifest) error { _, err := ParseDelta(m); return err }},
		{"DeltaRefs", func(m *Manifest) error { _, err := DeltaRefs(m); return err }},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := tt.parse(m)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrControlLimit) {
			t.Errorf("%s: err = %v, want ErrControlLimit", tt.name, err)
		}
		// Allocations are cumulative: the list up to the bound as it
		// grows, and a copy of the manifest's files.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 128<<20 {
			t.Errorf("%s: allocated %d MiB", tt.name, alloc>>20)
		}
	}
}

// A manifest within the bound parses as before.
func TestDeltaManifest_OK(t *testing.T) {
	js := []byte(`{"snapshot_result":{"hashes":[{"hexdigest":"` + digest('a') + `","size":5}],"state":{"root_globs":["."],` +
		`"files":[{"relative_path":"base/1/1000","file_size":5,"hexdigest":"` + digest('a') + `"},{"relative_path":"PG_VERSION","file_size":0,"content_b64":""}],` +
		`"empty_dirs":["pg_notify"]}}}`)
	m := &Manifest{DeltaManifest: js}
	dm, err := ParseDelta(m)
	if err != nil {
		t.Fatal(err)
	}
	st := dm.SnapshotResult.State
	if len(st.Files) != 2 || st.Files[0].Hexdigest != digest('a') || st.Files[1].ContentB64 == nil ||
		len(st.RootGlobs) != 1 || len(st.EmptyDirs) != 1 || len(dm.SnapshotResult.Hashes) != 1 || dm.SnapshotResult.Hashes[0].Size != 5 {
		t.Fatalf("parsed %+v", dm.SnapshotResult)
	}
	refs, err := DeltaRefs(m)
	if err != nil || len(refs) != 1 || refs[digest('a')].FileSize != 5 {
		t.Fatalf("DeltaRefs = %v, %v", refs, err)
	}
}
