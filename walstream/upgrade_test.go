package walstream

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestReceiver_Run_UpgradeUnclaimedPartial is an upgrade of the hoard
// binary under a daemon that holds only the public key (encryption_keys
// without "private"). hoard before f44d08a (2026-12-02; 33945b9 was run
// for this) stored the growing segment's .partial copies padded with
// zeros to the segment size and without the partial-data-size metadata.
// Such a version was stopped with a segment in progress: its .partial is
// in the spool and its last copy in the archive. The new Run, which
// cannot read that copy, resumes in the segment; its copies, which
// hold all the WAL of the spool's file and more, must be stored over
// it. Before, every copy of that segment, the one at the stop included,
// failed with ErrUnverifiedPartial ("claims more WAL") until the
// segment was complete: no .partial copy of the WAL received after the
// upgrade, a stop that waited out its drain timeout, and in synchronous
// mode commits waiting on the primary.
//
// A fresh spool (the daemon moved to another host) holds nothing of an
// earlier run: a copy there is not stored over such an object, which
// may hold more WAL than the copy (status quo, ErrUnverifiedPartial).
func TestReceiver_Run_UpgradeUnclaimedPartial(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	c := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	c.Exec(t, "create table rows (id bigint, pad text)")
	d := durableOf(t, c, "")
	key, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	d.arch.Codec.KeyID = "k1"
	d.arch.Codec.PublicKey = &key.PublicKey
	d.arch.Codec.PrivateKeys = map[string]*rsa.PrivateKey{"k1": key}
	publicOnly := *d.arch
	codec := *d.arch.Codec
	codec.PrivateKeys = map[string]*rsa.PrivateKey{}
	publicOnly.Codec = &codec

	// The older version's run: the segment in progress fsynced in the
	// spool, then stopped.
	rr := start(t, c, d.spool, d.up, Options{})
	d.insert(10)
	switchWAL(t, c)
	d.insert(100)
	at := lsn(t, c, "select pg_current_wal_flush_lsn()")
	waitFor(t, "the rows fsynced in the spool", func() bool { return rr.r.Status().Flushed >= at })
	rr.stop(t)
	seg := wal.SegmentOf(1, at-1, d.segSize)
	name := seg.Name(d.segSize) + wal.PartialSuffix
	old := oldVersionPartial(t, d, name)

	// The new binary, with the public key only.
	up := &archiveUploader{a: &publicOnly}
	rr = start(t, c, d.spool, up, Options{PartialUploadInterval: 100 * time.Millisecond})
	d.insert(10)
	after := lsn(t, c, "select pg_current_wal_flush_lsn()")
	if wal.SegmentOf(1, after-1, d.segSize) != seg {
		t.Fatalf("the rows after the upgrade went past %s: nothing to test", name)
	}
	want := int64(after - seg.StartLSN(d.segSize))
	ctx := context.Background()
	waitFor(t, name+" stored holding the WAL received after the upgrade", func() bool {
		data := decodedPartial(t, d.arch, name)
		return int64(len(bytes.TrimRight(data, "\x00"))) >= want
	})
	data := decodedPartial(t, d.arch, name)
	if !bytes.HasPrefix(data, bytes.TrimRight(old, "\x00")) {
		t.Errorf("the stored %s does not start with the older version's copy's WAL", name)
	}
	rr.stop(t)

	// The daemon on another host, with a spool of its own: its copies
	// come from no earlier run's file, and one holding less WAL than the
	// older version's copy is not stored over it.
	plantOldCopy(t, d.arch, name, old, d.segSize)
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, old[:len(bytes.TrimRight(old, "\x00"))/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := publicOnly.PutPartialWAL(ctx, p, archive.PushOptions{}); !errors.Is(err, archive.ErrUnverifiedPartial) {
		t.Errorf("a shorter copy from no spool of an earlier run: %v, want ErrUnverifiedPartial", err)
	}
	if got := decodedPartial(t, d.arch, name); !bytes.Equal(got, old) {
		t.Errorf("the older version's copy was stored over by a copy from no earlier run's spool")
	}
}

// oldVersionPartial stores the spool's valid WAL of name as hoard before
// f44d08a stored a .partial copy, and returns those bytes: padded with
// zeros to the segment size, without partial-data-size.
func oldVersionPartial(t *testing.T, d *durable, name string) []byte {
	t.Helper()
	n, err := validWAL(filepath.Join(d.spool, name), name)
	if err != nil || n == 0 {
		t.Fatalf("the spool's %s: %d bytes of WAL, %v", name, n, err)
	}
	b, err := os.ReadFile(filepath.Join(d.spool, name))
	if err != nil {
		t.Fatal(err)
	}
	old := make([]byte, d.segSize)
	copy(old, b[:n])
	plantOldCopy(t, d.arch, name, old, d.segSize)
	return old
}

// plantOldCopy stores data as xlog/name the way hoard before f44d08a
// did (33945b9's metadata: no partial-data-size).
func plantOldCopy(t *testing.T, a *archive.Archive, name string, data []byte, segSize uint64) {
	t.Helper()
	ctx := context.Background()
	key := a.Layout.WALKey(name)
	if err := a.Store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	md := storage.Metadata{archive.MetaOriginalFileSize: strconv.FormatUint(segSize, 10)}
	if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
	obj, err := a.Store.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := obj.Metadata[archive.MetaPartialDataSize]; ok {
		t.Fatalf("%s: the older version's copy has %s", key, archive.MetaPartialDataSize)
	}
}

// decodedPartial returns the stored xlog/name decoded with a's keys, nil
// when it is not stored.
func decodedPartial(t *testing.T, a *archive.Archive, name string) []byte {
	t.Helper()
	ctx := context.Background()
	rc, _, err := a.Codec.Open(ctx, a.Store, a.Layout.WALKey(name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return buf.Bytes()
}
