package restore

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/storage"
)

// readCounter is a Store that counts the bytes read through Open.
type readCounter struct {
	storage.Store
	n atomic.Int64
}

func (s *readCounter) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, o, err := s.Store.Open(ctx, key)
	if err != nil {
		return nil, o, err
	}
	return &countedReader{ReadCloser: rc, n: &s.n}, o, nil
}

type countedReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// BenchmarkReadControl_PGManifest reads the control object of a backup
// whose backup_manifest lists 200 000 files (some 30 MB) with its
// backup_manifest, as restore and verify do before anything else:
// TwoPasses as they did before (ReadControl, then readPGManifest, a
// second download, decryption and decompression), OnePass as they do
// now. Reported: bytes read from storage a read.
func BenchmarkReadControl_PGManifest(b *testing.B) {
	files := map[string]string{
		"global/pg_control": strings.Repeat("c", hostile.PGControlSize),
		"backup_label":      "START WAL LOCATION: 0/200028 (file " + hostile.StartSegment + ")\n",
	}
	for i := range 200_000 {
		files[fmt.Sprintf("base/%d/%d", 16384+i%50, 100000+i)] = ""
	}
	a := hostileArchive(b)
	st := hostile.Put(b, a, hostile.Backup{Name: "2026-01-02_03-00_0", PGManifest: true, NoLabel: true,
		Control: []hostile.Member{
			{Name: archive.ControlBackupLabel, Body: files["backup_label"]},
			{Name: archive.ControlPGManifest, Body: hostile.PGManifestJSON(b, files)},
		}})
	info, err := a.FindBackup(context.Background(), st.Name)
	if err != nil {
		b.Fatal(err)
	}
	counter := &readCounter{Store: a.Store}
	a.Store = counter
	want := func(*archive.Manifest) bool { return true }
	for _, bc := range []struct {
		name string
		read func(ctx context.Context) (*pgManifest, error)
	}{
		{"TwoPasses", func(ctx context.Context) (*pgManifest, error) {
			ctrl, err := ReadControl(ctx, a, info)
			if err != nil {
				return nil, err
			}
			return readPGManifest(ctx, a, info, ctrl, false, nil)
		}},
		{"OnePass", func(ctx context.Context) (*pgManifest, error) {
			p := &pgmPass{want: want}
			ctrl, err := readControl(ctx, a, info, p)
			if err != nil {
				return nil, err
			}
			return p.result(info, ctrl)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			counter.n.Store(0)
			for b.Loop() {
				pm, err := bc.read(context.Background())
				if err != nil || len(pm.files) != len(files) {
					b.Fatalf("%d files (%v), want %d", len(pm.files), err, len(files))
				}
			}
			b.ReportMetric(float64(counter.n.Load())/float64(b.N), "stored-bytes/op")
		})
	}
}
