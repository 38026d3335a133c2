package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_FetchWAL_AcceptTruncated: a segment refused as truncated
// (an earlier copy under the complete segment's name) is delivered when
// the operator names it in FetchOptions.AcceptTruncated, and Truncated
// says where its WAL ends; accepting it lifts that refusal alone: another
// segment's name, a tampered envelope, a hash that does not match, a
// first page of another segment or another system are still refused.
func TestArchive_FetchWAL_AcceptTruncated(t *testing.T) {
	ctx := context.Background()
	name := segName(3)
	cut := waltest.Segment(t, name, testSegSize, 1)
	clear(cut[testSegSize/2:])
	a := &Archive{Store: storage.NewLocal(t.TempDir()), Codec: encryptingCodec(t), Layout: Layout{Prefix: "site"}, Site: "site"}
	dir := t.TempDir()
	push := func(file string, data []byte) {
		t.Helper()
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := a.PushWAL(ctx, path, PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	push(name, cut)
	key := a.Layout.WALKey(name)
	orig, obj := storetest.Read(t, a.Store, key)
	dest := filepath.Join(dir, "RECOVERYXLOG")

	if err := a.FetchWAL(ctx, name, dest, FetchOptions{}); !errors.Is(err, ErrTruncatedSegment) {
		t.Fatalf("FetchWAL without accepting it = %v, want %v", err, ErrTruncatedSegment)
	}

	t.Run("OK", func(t *testing.T) {
		var got []*TruncatedSegmentError
		o := FetchOptions{AcceptTruncated: []string{segName(2), name}, Truncated: func(e *TruncatedSegmentError) { got = append(got, e) }}
		if err := a.FetchWAL(ctx, name, dest, o); err != nil {
			t.Fatalf("FetchWAL accepting %s = %v, want it delivered", name, err)
		}
		t.Cleanup(func() { os.Remove(dest) })
		if data, err := os.ReadFile(dest); err != nil || !bytes.Equal(data, cut) {
			t.Errorf("delivered %d bytes (%v), want the copy's %d", len(data), err, len(cut))
		}
		if len(got) != 1 || got[0].Offset >= testSegSize/2 {
			t.Errorf("Truncated called with %v, want once with the WAL's end before the cut at %d", got, testSegSize/2)
		}
	})

	for _, tc := range []struct {
		name   string
		accept string
		system uint64
		edit   func(data []byte, md storage.Metadata) []byte
		want   string
	}{
		{"ErrOtherName", segName(4), 0, nil, ErrTruncatedSegment.Error()},
		{"ErrTampered", name, 0, func(d []byte, _ storage.Metadata) []byte { d[len(d)/2] ^= 1; return d }, "hmac mismatch"},
		{"ErrHash", name, 0, func(d []byte, md storage.Metadata) []byte {
			md[MetaHash] = strings.Repeat("0", len(md[MetaHash]))
			return d
		}, "damaged object"},
		{"ErrOtherSegment", name, 0, func(_ []byte, md storage.Metadata) []byte {
			other := waltest.Segment(t, segName(5), testSegSize, 1)
			clear(other[testSegSize/2:])
			push(segName(5), other)
			data, o := storetest.Read(t, a.Store, a.Layout.WALKey(segName(5)))
			clear(md)
			for k, v := range o.Metadata {
				md[k] = v
			}
			return data
		}, "page"},
		{"ErrOtherSystem", name, 42, nil, "system"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.edit != nil {
				storetest.Rewrite(t, a.Store, key, tc.edit)
				t.Cleanup(func() {
					if err := a.Store.Put(ctx, key, bytes.NewReader(orig), obj.Metadata); err != nil {
						t.Fatal(err)
					}
				})
			}
			called := false
			o := FetchOptions{AcceptTruncated: []string{tc.accept}, SystemID: tc.system, Truncated: func(*TruncatedSegmentError) { called = true }}
			err := a.FetchWAL(ctx, name, dest, o)
			if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), tc.want) || called {
				t.Errorf("FetchWAL accepting %s = %v (Truncated called: %v), want a refusal saying %q", tc.accept, err, called, tc.want)
			}
			if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s exists after the refusal (%v)", dest, err)
			}
		})
	}
}

// TestArchive_TruncatedEnd: the refusal --accept-truncated lifts is found
// before anything is restored: where a cut copy's WAL ends; a name that
// is not stored (ErrNotFound) or a segment wal-fetch delivers anyway
// (ErrNotTruncated) is an error, since accepting it would protect
// nothing; a tampered cut copy is refused as FetchWAL refuses it.
func TestArchive_TruncatedEnd(t *testing.T) {
	ctx := context.Background()
	a := &Archive{Store: storage.NewLocal(t.TempDir()), Codec: encryptingCodec(t), Layout: Layout{Prefix: "site"}, Site: "site"}
	cut := waltest.Segment(t, segName(3), testSegSize, 1)
	clear(cut[testSegSize/2:])
	dir := t.TempDir()
	for name, data := range map[string][]byte{segName(3): cut, segName(4): waltest.Segment(t, segName(4), testSegSize, 1)} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := a.PushWAL(ctx, path, PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var fetched *TruncatedSegmentError
	o := FetchOptions{AcceptTruncated: []string{segName(3)}, Truncated: func(e *TruncatedSegmentError) { fetched = e }}
	if err := a.FetchWAL(ctx, segName(3), filepath.Join(dir, "RECOVERYXLOG"), o); err != nil || fetched == nil {
		t.Fatalf("FetchWAL accepting %s = %v, want it delivered", segName(3), err)
	}

	t.Run("OK", func(t *testing.T) {
		got, err := a.TruncatedEnd(ctx, segName(3))
		if err != nil || got == nil || *got != *fetched {
			t.Fatalf("TruncatedEnd(%s) = %v, %v; want %v, the end FetchWAL reports", segName(3), got, err, fetched)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if got, err := a.TruncatedEnd(ctx, segName(5)); !errors.Is(err, storage.ErrNotFound) || got != nil {
			t.Errorf("TruncatedEnd(%s), not stored = %v, %v; want %v", segName(5), got, err, storage.ErrNotFound)
		}
	})
	t.Run("ErrNotTruncated", func(t *testing.T) {
		if got, err := a.TruncatedEnd(ctx, segName(4)); !errors.Is(err, ErrNotTruncated) || got != nil {
			t.Errorf("TruncatedEnd(%s), whole = %v, %v; want %v", segName(4), got, err, ErrNotTruncated)
		}
	})
	t.Run("ErrTampered", func(t *testing.T) {
		storetest.Rewrite(t, a.Store, a.Layout.WALKey(segName(3)), func(d []byte, _ storage.Metadata) []byte { d[len(d)/2] ^= 1; return d })
		got, err := a.TruncatedEnd(ctx, segName(3))
		if err == nil || got != nil || errors.Is(err, ErrTruncatedSegment) {
			t.Errorf("TruncatedEnd(%s), tampered = %v, %v; want the codec's refusal", segName(3), got, err)
		}
	})
}

// TestArchive_PrefetchWAL_AcceptTruncated: the prefetch worker leaves a
// segment the operator accepts as truncated to wal-fetch itself, which
// delivers it with the warning naming where recovery ends, rather than
// failing on it with the refusal in its worker log; a segment nobody
// accepted still stops it with the refusal.
func TestArchive_PrefetchWAL_AcceptTruncated(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	segs := pushSegments(t, a, 1, 2)
	cut := waltest.Segment(t, segName(3), testSegSize, 3)
	clear(cut[testSegSize/2:])
	if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), segName(3), cut), PushOptions{SystemID: testSystemID}); err != nil {
		t.Fatal(err)
	}
	pushSegments(t, a, 4, 4)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	o := FetchOptions{Spool: SpoolDir(dest), AcceptTruncated: []string{segName(3)}}
	if err := a.FetchWAL(ctx, segName(1), dest, o); err != nil {
		t.Fatal(err)
	}

	if _, err := a.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 3}); !errors.Is(err, ErrTruncatedSegment) {
		t.Fatalf("PrefetchWAL without accepting %s = %v, want %v", segName(3), err, ErrTruncatedSegment)
	}
	res, err := a.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 3, AcceptTruncated: o.AcceptTruncated})
	if err != nil {
		t.Fatalf("PrefetchWAL accepting %s = %v, want no refusal", segName(3), err)
	}
	if slices.Contains(res.Fetched, segName(3)) || slices.Contains(testio.DirNames(t, o.Spool), segName(3)) {
		t.Errorf("PrefetchWAL spooled %s (%v), want it left to wal-fetch", segName(3), res.Fetched)
	}
	if err := a.FetchWAL(ctx, segName(2), dest, o); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dest, segs[segName(2)])
	var warned *TruncatedSegmentError
	o.Truncated = func(e *TruncatedSegmentError) { warned = e }
	if err := a.FetchWAL(ctx, segName(3), dest, o); err != nil || warned == nil {
		t.Fatalf("FetchWAL accepting %s = %v (warned: %v), want it delivered with the warning", segName(3), err, warned)
	}
	checkFile(t, dest, cut)
}

// TestArchive_FetchWAL_AcceptTruncatedAt: an acceptance that names where
// the segment's WAL ends (SEGMENT@LSN, which hoard restore writes once it
// has read the segment) delivers only a copy whose WAL ends there. The
// storage writer who kept an earlier copy of the segment (the daemon's
// .partial, authentic) and puts it in place after the restore checked the
// accepted one would otherwise end recovery earlier than the operator
// accepted, with a warning that looks like the accepted one.
// Real WAL (PostgreSQL 15, 1 MiB segments), so that the two cuts end
// at two records.
func TestArchive_FetchWAL_AcceptTruncatedAt(t *testing.T) {
	ctx := context.Background()
	z := waltest.ZeroEndedSegment(t, pgtest.DebianMajor)
	name := z.Name
	a := &Archive{Store: storage.NewLocal(t.TempDir()), Codec: encryptingCodec(t), Layout: Layout{Prefix: "site"}, Site: "site"}
	dir := t.TempDir()
	for _, c := range []struct {
		file string
		at   int64
	}{{name + ".partial", z.Before / 2}, {name, z.Before}} {
		cut := slices.Clone(z.Data)
		clear(cut[c.at:])
		path := filepath.Join(dir, c.file)
		if err := os.WriteFile(path, cut, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := a.PushWAL(ctx, path, PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	accepted, err := a.TruncatedEnd(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	at := name + "@" + accepted.End.String()
	dest := filepath.Join(dir, "RECOVERYXLOG")
	fetch := func(accept string) (*TruncatedSegmentError, error) {
		t.Helper()
		var got *TruncatedSegmentError
		err := a.FetchWAL(ctx, name, dest, FetchOptions{AcceptTruncated: []string{accept}, Truncated: func(e *TruncatedSegmentError) { got = e }})
		t.Cleanup(func() { os.Remove(dest) })
		return got, err
	}
	if got, err := fetch(at); err != nil || got == nil || got.End != accepted.End {
		t.Fatalf("FetchWAL accepting %s = %v (Truncated called with %v), want it delivered", at, err, got)
	}
	os.Remove(dest)

	// The earlier copy, metadata and all, under the complete name.
	data, obj := storetest.Read(t, a.Store, a.Layout.WALKey(name+".partial"))
	if err := a.Store.Put(ctx, a.Layout.WALKey(name), bytes.NewReader(data), obj.Metadata); err != nil {
		t.Fatal(err)
	}
	got, err := fetch(at)
	if err == nil || !errors.Is(err, ErrTruncatedSegment) || !strings.Contains(err.Error(), accepted.End.String()) || got != nil {
		t.Errorf("FetchWAL accepting %s of an earlier copy = %v (Truncated called with %v), want a refusal naming the accepted end %s", at, err, got, accepted.End)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after the refusal (%v)", dest, err)
	}
	// The name alone accepts any end (a restore_command written by hand).
	if got, err := fetch(name); err != nil || got == nil || got.End >= accepted.End {
		t.Errorf("FetchWAL accepting %s of the earlier copy = %v (Truncated called with %v), want it delivered, its WAL ending before %s", name, err, got, accepted.End)
	}
}
