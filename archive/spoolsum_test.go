package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/storetest"
)

// TestSpool_Take_ErrChangedOnDisk: a segment the prefetch worker spooled
// whole and checked, whose bytes on disk then changed (a failing disk: a
// flipped bit, a lost write read back as zeros, a file cut short; or a
// file put there by hand), is not handed to PostgreSQL: spool.take
// checked only its first page header, its size and its system, so a
// flipped bit past the first page reached PostgreSQL, which takes a
// record whose CRC fails for the end of the WAL and, outside standby
// mode, ends recovery there without an error. Such a file is removed and
// the segment downloaded again, with a warning naming the segment, the
// spooled file and what differs: the operator must hear of a disk that
// changes what it stored. A segment without its checksum file (spooled
// by an older hoard) is only noted (info): nothing says its disk failed.
// One refused for another reason (not a regular file) is a warning with
// that reason.
func TestSpool_Take_ErrChangedOnDisk(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string)
		level  string // of the line logged
		size   int64  // the size read, in a warning of changed bytes
	}{
		{"BitFlip", func(t *testing.T, path string) {
			rewriteFile(t, path, func(b []byte) []byte { b[len(b)/2] ^= 0x04; return b })
		}, "warn", testSegSize},
		{"ZeroedPage", func(t *testing.T, path string) {
			rewriteFile(t, path, func(b []byte) []byte { clear(b[3*8192 : 4*8192]); return b })
		}, "warn", testSegSize},
		{"LastByte", func(t *testing.T, path string) {
			rewriteFile(t, path, func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b })
		}, "warn", testSegSize},
		{"Truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, testSegSize/2); err != nil {
				t.Fatal(err)
			}
		}, "warn", testSegSize / 2},
		{"ChecksumGone", func(t *testing.T, path string) {
			rewriteFile(t, path, func(b []byte) []byte { b[len(b)/2] ^= 0x04; return b })
			if err := os.Remove(path + spoolSumSuffix); err != nil {
				t.Fatal(err)
			}
		}, "info", 0},
		{"NotRegular", func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "elsewhere")
			if err := os.Rename(path, target); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, "warn", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newSpoolFixture(t, 3, 9)
			var logged bytes.Buffer
			f.a.Log = zerolog.New(&logged)
			log := &storetest.OpenLog{Store: f.a.Store}
			f.a.Store = log
			spoolDir := SpoolDir(f.dest)
			o := FetchOptions{Spool: spoolDir, SystemID: 7123456789012345678} // waltest.Segment's
			f.fetch(t, 1, 1, o)
			if res, err := f.a.PrefetchWAL(ctx, spoolDir, PrefetchOptions{Count: 2}); err != nil || len(res.Fetched) != 2 {
				t.Fatalf("prefetch: %+v %v, want segments 2 and 3 spooled", res, err)
			}
			spooled := filepath.Join(spoolDir, segName(2))
			tc.change(t, spooled)

			log.Reset()
			f.fetch(t, 2, 2, o)
			if got, want := log.Keys(), []string{f.a.Layout.WALKey(segName(2))}; !slices.Equal(got, want) {
				t.Errorf("downloaded %v, want %v: the changed spooled file must be fetched again", got, want)
			}
			lines := logLines(t, &logged)
			if len(lines) != 1 {
				t.Fatalf("logged %d lines, want 1 about the refused spooled file:\n%s", len(lines), logged.String())
			}
			l := lines[0]
			if l["level"] != tc.level || l["segment"] != segName(2) || l["spool"] != spooled || l["site"] != f.a.Site {
				t.Errorf("logged %v, want level %s naming segment %s, spool %s and site %s", l, tc.level, segName(2), spooled, f.a.Site)
			}
			switch {
			case tc.size > 0:
				got, want := fmt.Sprint(l["size"], " ", l["crc32c"]), fmt.Sprint(l["want_size"], " ", l["want_crc32c"])
				if l["size"] != float64(tc.size) || l["want_size"] != float64(testSegSize) || got == want ||
					len(fmt.Sprint(l["crc32c"])) != 8 || len(fmt.Sprint(l["want_crc32c"])) != 8 {
					t.Errorf("logged size and CRC-32C %q, recorded %q; want %d bytes read, %d recorded, the CRCs in hex", got, want, tc.size, testSegSize)
				}
			case tc.level == "info":
				if msg := fmt.Sprint(l["message"]); !strings.Contains(msg, "older hoard") {
					t.Errorf("logged %q, want it to say that an older hoard spooled the segment", msg)
				}
			default:
				if msg := fmt.Sprint(l["error"]); !strings.Contains(msg, "not a regular file") {
					t.Errorf("logged the error %q, want why the file was refused", msg)
				}
			}
			// The untouched segment 3 is still taken from the spool, and
			// nothing is logged of it.
			log.Reset()
			logged.Reset()
			f.fetch(t, 3, 3, o)
			if keys := log.Keys(); len(keys) > 0 {
				t.Errorf("segment 3, spooled and untouched, downloaded %v", keys)
			}
			if logged.Len() > 0 {
				t.Errorf("segment 3, spooled and untouched, logged %s", logged.String())
			}
		})
	}
}

// TestSpool_Take_OK: a spooled segment whose bytes are those spooled is
// taken without a download, and nothing of it is left in the spool, nor
// the checksum file a crash left without its segment (written first) of
// an earlier segment.
func TestSpool_Take_OK(t *testing.T) {
	ctx := context.Background()
	f := newSpoolFixture(t, 2, 9)
	log := &storetest.OpenLog{Store: f.a.Store}
	f.a.Store = log
	spoolDir := SpoolDir(f.dest)
	o := FetchOptions{Spool: spoolDir}
	f.fetch(t, 1, 1, o)
	if res, err := f.a.PrefetchWAL(ctx, spoolDir, PrefetchOptions{Count: 1}); err != nil || len(res.Fetched) != 1 {
		t.Fatalf("prefetch: %+v %v, want segment 2 spooled", res, err)
	}
	orphan := filepath.Join(spoolDir, segName(1)+spoolSumSuffix)
	if err := os.WriteFile(orphan, []byte("00000000 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	f.fetch(t, 2, 2, o)
	if keys := log.Keys(); len(keys) > 0 {
		t.Errorf("spooled segment downloaded %v", keys)
	}
	if n := spoolSumNames(t, spoolDir); len(n) > 0 {
		t.Errorf("spool still holds %v after its segment was taken", n)
	}
}

// logLines decodes the JSON lines in b.
func logLines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// rewriteFile replaces path's bytes with change's result in place, as a
// disk that changed them would: same inode, no rename.
func rewriteFile(t *testing.T, path string, change func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = change(bytes.Clone(b))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// spoolSumNames returns the names of the checksum files in the spool dir.
func spoolSumNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, ok := spoolSumSegment(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out
}
