package replication

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// testTimeout bounds each test's protocol exchanges.
const testTimeout = 2 * time.Minute

// forEachVersion runs fn in a parallel subtest per major under test.
func forEachVersion(t *testing.T, fn func(t *testing.T, major int)) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		t.Parallel()
		fn(t, major)
	})
}

// testContext returns a context ending with the test or after testTimeout.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// connect opens a replication connection to c, closed when the test ends.
func connect(t testing.TB, c *pgtest.Cluster) *Conn {
	t.Helper()
	conn, err := Connect(testContext(t), c.ConnString("postgres"))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// segmentName is the WAL file name of the segment holding lsn.
func segmentName(tli int32, lsn pglogrepl.LSN, segSize uint64) string {
	seg := uint64(lsn) / segSize
	perID := uint64(0x100000000) / segSize
	return fmt.Sprintf("%08X%08X%08X", tli, seg/perID, seg%perID)
}

// extractTar unpacks one tar stream from r into dir and checks that it is
// a complete archive: after the last member comes the end-of-archive
// marker, two zero blocks, and nothing else. links maps pg_tblspc symlink
// names to the directories their tablespaces were extracted to.
func extractTar(t testing.TB, r io.Reader, dir string, links map[string]string) []string {
	t.Helper()
	cr := &storage.CountingReader{R: r}
	tr := tar.NewReader(cr)
	var names []string
	var dataEnd int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		names = append(names, hdr.Name)
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatalf("tar %s: %v", hdr.Name, err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			dest := hdr.Linkname
			if d, ok := links[strings.TrimSuffix(hdr.Name, "/")]; ok {
				dest = d
			}
			if err := os.Symlink(dest, target); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("tar %s: unexpected type %q", hdr.Name, hdr.Typeflag)
		}
		dataEnd = cr.N
	}
	// archive/tar stops at the first zero block; the second must follow,
	// and nothing else.
	end := (dataEnd+511)/512*512 + tarTrailerSize
	rest, err := io.ReadAll(cr)
	if err != nil {
		t.Fatalf("read after tar end: %v", err)
	}
	if cr.N != end || slices.ContainsFunc(rest, func(b byte) bool { return b != 0 }) {
		t.Fatalf("tar stream is %d bytes, want %d: last member ends at %d, then exactly the 1024-byte end-of-archive marker", cr.N, end, dataEnd)
	}
	return names
}

// manifest is the part of backup_manifest the tests check.
type manifest struct {
	Version int `json:"PostgreSQL-Backup-Manifest-Version"`
	Files   []struct {
		Path string `json:"Path"`
		Size int64  `json:"Size"`
	} `json:"Files"`
	WALRanges []struct {
		Timeline int32  `json:"Timeline"`
		Start    string `json:"Start-LSN"`
		End      string `json:"End-LSN"`
	} `json:"WAL-Ranges"`
}

// checkManifest checks the extracted backup in dir against its manifest:
// every listed file exists with its size, every extracted file is listed,
// and the WAL range is the backup's.
func checkManifest(t testing.TB, dir string, start, end pglogrepl.LSN, tli int32) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "backup_manifest"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("parse backup_manifest: %v", err)
	}
	listed := map[string]bool{}
	for _, f := range m.Files {
		listed[f.Path] = true
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			t.Errorf("manifest file %s: %v", f.Path, err)
			continue
		}
		if fi.Size() != f.Size {
			t.Errorf("manifest file %s: size %d, extracted %d", f.Path, f.Size, fi.Size())
		}
	}
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			// Walk does not follow links: walk the tablespace too.
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			return filepath.Walk(target, func(q string, fi os.FileInfo, err error) error {
				if err != nil || fi.IsDir() {
					return err
				}
				r, _ := filepath.Rel(target, q)
				if name := filepath.ToSlash(filepath.Join(rel, r)); !listed[name] {
					t.Errorf("extracted %s is not in the manifest", name)
				}
				return nil
			})
		}
		if fi.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "backup_manifest" && !listed[filepath.ToSlash(rel)] {
			t.Errorf("extracted %s is not in the manifest", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.WALRanges) != 1 {
		t.Fatalf("manifest WAL ranges: %+v", m.WALRanges)
	}
	w := m.WALRanges[0]
	if w.Timeline != tli || w.Start != start.String() || w.End != end.String() {
		t.Errorf("manifest WAL range %d %s-%s, backup %d %s-%s", w.Timeline, w.Start, w.End, tli, start, end)
	}
}

func parseLSN(t testing.TB, s string) (pglogrepl.LSN, error) {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn, nil
}

func itoa(i int) string { return strconv.Itoa(i) }

// promoted returns a cluster on timeline 2: initdb, clean shutdown, start
// as a standby (consistent at once: nothing to replay), promote.
func promoted(t *testing.T, major int) *pgtest.Cluster {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	c.Exec(t, "create table before_promotion as select generate_series(1, 1000) as i")
	c.NewTimeline(t)
	return c
}
