package command

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestLargeArchive builds, when HOARD_LARGE_ARCHIVE names a directory,
// a site "s" in local storage there (store/, its configuration in
// hoard.json, encrypted with a new key pair, snappy), for measuring hoard's commands on
// an archive of the size operators reach (docs/benchmarks.md, Large
// archives): HOARD_LARGE_ARCHIVE_WAL WAL objects (default 100 000) from
// segment 000000010000000000000002 on, small stand-ins whose bytes are
// not WAL but the last, a real 16 MiB segment for wal-fetch, and
// HOARD_LARGE_ARCHIVE_BACKUPS backups (default 300) an hour apart, their
// starts spread evenly over the WAL, each a real control object and two
// chunks of 5 000 bytes, signed as hoard basebackup signs them. Written
// through the archive's own codec and store, so names, metadata and
// encryption are those hoard writes. Without the variable it does
// nothing: it is a tool, not a test.
func TestLargeArchive(t *testing.T) {
	dir := os.Getenv("HOARD_LARGE_ARCHIVE")
	if dir == "" {
		t.Skip("HOARD_LARGE_ARCHIVE is not set")
	}
	count := func(env string, def int) int {
		n, err := strconv.Atoi(cmp.Or(os.Getenv(env), strconv.Itoa(def)))
		if err != nil || n < 1 {
			t.Fatalf("%s: want a positive number", env)
		}
		return n
	}
	nWAL, nBackups := count("HOARD_LARGE_ARCHIVE_WAL", 100000), count("HOARD_LARGE_ARCHIVE_BACKUPS", 300)
	const segSize = 16 << 20
	ctx := context.Background()
	key, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := crypto.EncodePrivateKeyPEM(key)
	pub, _ := crypto.EncodePublicKeyPEM(&key.PublicKey)
	store := filepath.Join(dir, "store")
	st, err := storage.Open(ctx, storage.Config{Type: "local", Directory: store})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := &archive.Codec{Compression: compress.Snappy, KeyID: "k1", PublicKey: &key.PublicKey,
		PrivateKeys: map[string]*rsa.PrivateKey{"k1": key}, RequireEncryption: true}
	a := &archive.Archive{Store: st, Codec: c, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	cfg := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": "s", "basebackup_count": %d, "basebackup_interval_hours": 1, `+
		`"encryption_key_id": "k1", "encryption_keys": {"k1": {"public": %s, "private": %s}}, `+
		`"nodes": [{"host": "127.0.0.1", "port": 59999, "user": "x"}], `+
		`"object_storage": {"storage_type": "local", "directory": %q}}}}`, filepath.Join(dir, "state"), nBackups, jsonString(t, pub), jsonString(t, priv), store)
	if err := os.WriteFile(filepath.Join(dir, "hoard.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	system := uint64(7123456789012345678)
	// The WAL: four writers, as the local store fsyncs each object.
	var wg sync.WaitGroup
	ch := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for no := range ch {
				name := wal.Segment{Timeline: 1, No: uint64(no)}.Name(segSize)
				data := []byte("fake WAL " + name)
				if no == nWAL+1 {
					data = waltest.SegmentOf(t, name, segSize, 0, system)
				}
				sum := sha1.Sum(data)
				md := storage.Metadata{archive.MetaHash: hex.EncodeToString(sum[:]), archive.MetaHashAlgorithm: "sha1"}
				if _, err := c.Put(ctx, st, a.Layout.WALKey(name), bytes.NewReader(data), int64(len(data)), md); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for no := 2; no <= nWAL+1; no++ {
		ch <- no
	}
	close(ch)
	wg.Wait()
	per := nWAL / nBackups
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	for i := range nBackups {
		at := t0.Add(time.Duration(i) * time.Hour)
		name := at.Format("2006-01-02_15-04") + "_0"
		startNo := uint64(2 + i*per)
		m := &archive.Manifest{Tablespaces: map[string]archive.ManifestTablespace{}, Hoard: &archive.HoardManifest{SystemID: fmt.Sprint(system)}}
		for j := 1; j <= 2; j++ {
			tr := hostile.Tar(t, hostile.Member{Name: fmt.Sprintf("pgdata/base/%d", j), Body: strings.Repeat("x", 5000)})
			fn := archive.ChunkFilename(name, j)
			sd, err := c.Put(ctx, st, a.Layout.ChunkKey(fn), bytes.NewReader(tr), int64(len(tr)), nil)
			if err != nil {
				t.Fatal(err)
			}
			m.Chunks = append(m.Chunks, archive.ManifestChunk{ChunkFilename: fn, InputSize: int64(len(tr)), ResultSize: sd.StoredSize,
				HMAC: hex.EncodeToString(sd.HMAC), Files: []string{fmt.Sprintf("pgdata/base/%d", j)}})
		}
		js, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		start := wal.Segment{Timeline: 1, No: startNo}
		control := hostile.Tar(t,
			hostile.Member{Name: archive.ManifestName, Body: string(js)},
			hostile.Member{Name: archive.ControlPGControl, Body: strings.Repeat("c", hostile.PGControlSize)},
			hostile.Member{Name: archive.ControlBackupLabel, Body: fmt.Sprintf("START WAL LOCATION: %s (file %s)\n", start.StartLSN(segSize)+0x28, start.Name(segSize))})
		b := &archive.BackupInfo{
			Format: archive.FormatBBv2, StartWALSegment: start.Name(segSize),
			EndWALSegment: wal.Segment{Timeline: 1, No: startNo + 1}.Name(segSize),
			StartTime:     at, EndTime: at.Add(time.Minute),
			StartLSN: start.StartLSN(segSize) + 0x28, EndLSN: wal.Segment{No: startNo + 1}.StartLSN(segSize) + 0x100,
			StartTimeline: 1, EndTimeline: 1, WALSegmentSize: segSize, PGVersion: 150004, ChunkCount: 2, SystemID: fmt.Sprint(system),
		}
		md := b.ToMetadata()
		if err := c.SignBackup(name, md); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, st, a.Layout.BackupKey(name), bytes.NewReader(control), int64(len(control)), md); err != nil {
			t.Fatal(err)
		}
	}
}
