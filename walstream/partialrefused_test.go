package walstream

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/waltest"
)

// TestReceiver_Run_PartialRefusedDoesNotBlock streams from a standby
// that is then promoted, into an encrypted archive where the Receiver's
// Uploader holds only the public key. Someone who can write the bucket
// but holds no key has planted the old timeline's <segment>.partial: a
// copy of another encrypted object, claiming (in its metadata) a whole
// segment of WAL. The Uploader cannot read it to check the claim and
// must not store over it (archive.ErrUnverifiedPartial), whatever the
// retries. The new timeline's segments queued behind the .partial must
// still be stored; the .partial stays in the spool, the planted object
// stays as it is, the error stays in Status; once the object is moved
// away, the retry stores the .partial and the error clears.
func TestReceiver_Run_PartialRefusedDoesNotBlock(t *testing.T) {
	ctx := context.Background()
	primary := pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor, WALSegmentSizeMB: 1})
	standby := startStandby(t, primary)
	segSize := segSizeOf(t, standby)
	system, err := strconv.ParseUint(standby.QueryString(t, "select system_identifier::text from pg_control_system()"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}

	key, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	arch := openArchive(t.TempDir())
	arch.Codec.KeyID, arch.Codec.PublicKey = "k1", &key.PublicKey
	arch.Codec.PublicKeys = map[string]*rsa.PublicKey{"k1": &key.PublicKey}
	arch.Codec.RequireEncryption = true
	u := &archiveUploader{a: arch, system: system}

	spool := t.TempDir()
	rr := start(t, standby, spool, u, Options{})
	first := rr.r.Status().Segment
	switchWAL(t, primary)
	last := switchWAL(t, primary)
	waitStored(t, u, waltest.Names(t, first, last, segSize)...)
	// Leave the switch point in the middle of a segment.
	primary.Exec(t, "insert into filler select generate_series(1, 1000)")
	target := lsn(t, primary, "select pg_current_wal_flush_lsn()")
	waitFor(t, "WAL received from the standby", func() bool { return rr.r.Status().Received >= target })

	// The planted .partial of the segment the timeline will end in: the
	// bytes and metadata of a stored segment, and a claim of a whole
	// segment of WAL.
	partial := rr.r.Status().Segment + ".partial"
	if !strings.HasPrefix(partial, "00000001") {
		t.Fatalf("receiving %s, want timeline 1", partial)
	}
	plantedKey := arch.Layout.WALKey(partial)
	planted, obj := storetest.Read(t, arch.Store, arch.Layout.WALKey(last))
	md := maps.Clone(obj.Metadata)
	md[archive.MetaPartialDataSize] = strconv.FormatUint(segSize, 10)
	if err := arch.Store.Put(ctx, plantedKey, bytes.NewReader(planted), md); err != nil {
		t.Fatal(err)
	}

	standby.Promote(t)
	standby.WaitRecoveryDone(t, testTimeout)
	after := switchWAL(t, standby)
	if !strings.HasPrefix(after, "00000002") {
		t.Fatalf("segment %s after promotion", after)
	}
	// Everything of timeline 2 is stored, though the .partial before it
	// in the queue is refused at every try.
	names := append([]string{"00000002.history"}, waltest.Names(t, "00000002"+partial[8:24], after, segSize)...)
	waitStored(t, u, names...)
	if _, err := os.Stat(filepath.Join(spool, partial)); err != nil {
		t.Fatalf("the refused %s left the spool: %v", partial, err)
	}
	st := rr.r.Status()
	if !errors.Is(st.LastErr, archive.ErrUnverifiedPartial) || !strings.Contains(st.LastError, partial) {
		t.Errorf("Status().LastError = %q, want the refused %s's ErrUnverifiedPartial", st.LastError, partial)
	}
	if got, _ := storetest.Read(t, arch.Store, plantedKey); !bytes.Equal(got, planted) {
		t.Fatalf("the planted %s was replaced", plantedKey)
	}
	for _, c := range u.uploads() {
		if c.name == partial {
			t.Fatalf("%s reported stored over the planted copy", partial)
		}
	}

	// The operator moves the object away: the retry stores the .partial.
	if err := arch.Store.Delete(ctx, plantedKey); err != nil {
		t.Fatal(err)
	}
	waitStored(t, u, partial)
	waitFor(t, "the refused .partial to leave the spool", func() bool {
		_, err := os.Stat(filepath.Join(spool, partial))
		return errors.Is(err, os.ErrNotExist)
	})
	waitFor(t, "the upload error to clear", func() bool { return rr.r.Status().LastErr == nil })
	rr.stop(t)
}

// waitStored waits until u stored every name.
func waitStored(t *testing.T, u *archiveUploader, names ...string) {
	t.Helper()
	waitFor(t, "stored "+strings.Join(names, " "), func() bool {
		done := map[string]bool{}
		for _, c := range u.uploads() {
			done[c.name] = true
		}
		for _, n := range names {
			if !done[n] {
				return false
			}
		}
		return true
	})
}
