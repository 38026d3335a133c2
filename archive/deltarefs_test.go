package archive

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// A reference list is stored without the envelope: anyone who can write
// to the bucket can replace it, also in a site with keys, and it is
// decoded before its MAC can be checked. A list of 16 MiB of empty
// digests is refused at the first one, allocating little more than the
// list's bytes. Before, its 5.6 million strings were decoded first (645
// MiB allocated; for a list of 64 MiB, the most read, some 2.5 GiB), to
// be refused by the MAC.
func TestArchive_ReadDeltaRefsErrShortDigests(t *testing.T) {
	a := walTestArchive(t, true)
	var b bytes.Buffer
	b.WriteString(`{"format":"` + FormatDeltaRefs + `","backup":"b","key_id":"k1","digests":[`)
	b.Write(bytes.Repeat([]byte(`"",`), 16<<20/3))
	b.WriteString(`""],"mac":"00"}`)
	if err := a.Store.Put(context.Background(), a.Layout.DeltaRefsKey("b"), &b, storage.Metadata{MetaFormat: FormatDeltaRefs}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := a.ReadDeltaRefs(context.Background(), "b")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrDeltaRefsInvalid) || !strings.Contains(err.Error(), "not a delta object's digest") {
		t.Fatalf("err = %v, want ErrDeltaRefsInvalid for a digest that is not one", err)
	}
	// The list's bytes, read whole and buffered by the JSON decoder
	// (both growing as they are read), and little more: 98 MiB, 133 MiB
	// under -race, whose allocations are larger. Decoding the digests
	// first took 645 MiB.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d MiB", alloc>>20)
	if alloc > 256<<20 {
		t.Errorf("allocated %d MiB", alloc>>20)
	}
}

// A digest that is not one is named in the error by its start only: the
// error goes to the log, the daemon's status and its state file, and the
// string is as long as whoever replaced the list made it (up to the
// list's limit). Before, the whole string was quoted.
func TestArchive_ReadDeltaRefsErrLongDigest(t *testing.T) {
	a := walTestArchive(t, true)
	long := strings.Repeat("a", 1<<20)
	list := `{"format":"` + FormatDeltaRefs + `","backup":"b","key_id":"k1","digests":["` + long + `"],"mac":"00"}`
	if err := a.Store.Put(context.Background(), a.Layout.DeltaRefsKey("b"), strings.NewReader(list), storage.Metadata{MetaFormat: FormatDeltaRefs}); err != nil {
		t.Fatal(err)
	}
	_, err := a.ReadDeltaRefs(context.Background(), "b")
	if !errors.Is(err, ErrDeltaRefsInvalid) || !strings.Contains(err.Error(), "not a delta object's digest") {
		t.Fatalf("err = %v, want ErrDeltaRefsInvalid for a digest that is not one", err)
	}
	if len(err.Error()) > 1024 {
		t.Errorf("error of %d bytes, want the digest's start only", len(err.Error()))
	}
}
