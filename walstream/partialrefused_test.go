package walstream

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// refusingUploader refuses every .partial for good
// (archive.ErrUnverifiedPartial) while refuse is set, and stores
// (accepts) everything else.
type refusingUploader struct {
	refuse atomic.Bool
	stored atomic.Int32 // .partial files accepted
}

func (u *refusingUploader) Upload(context.Context, string) error { return nil }

func (u *refusingUploader) UploadPartial(context.Context, string, int64, bool) error {
	if u.refuse.Load() {
		return fmt.Errorf("test: %w", archive.ErrUnverifiedPartial)
	}
	u.stored.Add(1)
	return nil
}

// TestReceiver_PartialRefusedCountsAsQueued: an ended timeline's .partial
// that the storage refuses for good leaves the upload queue between its
// retries (refusePartial), but it still waits for upload: Status counts
// it in QueuedSince, and so hoard_wal_lag_seconds, from when it was
// queued (the file's modification time, an hour ago here) and names it
// in RefusedPartials, until it is stored. Left out, the lag read "nothing
// waiting" while the WAL sat unstored in the spool, and a lag alert never
// fired.
func TestReceiver_PartialRefusedCountsAsQueued(t *testing.T) {
	spool := t.TempDir()
	const name = "000000010000000000000009.partial"
	p := filepath.Join(spool, name)
	if err := os.WriteFile(p, []byte("wal of an ended timeline"), 0o600); err != nil {
		t.Fatal(err)
	}
	written := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(p, written, written); err != nil {
		t.Fatal(err)
	}
	up := &refusingUploader{}
	up.refuse.Store(true)
	r, err := New(Options{Slot: "hoard", SpoolDir: spool, Uploader: up})
	if err != nil {
		t.Fatal(err)
	}
	// No retry while the refusal is looked at.
	r.retryMin, r.retryMax = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); r.uploadLoop(ctx, stop) }()
	if err := r.finishPartial(name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the .partial refused and out of the queue", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.refused) == 1 && r.queue.len() == 0
	})
	st := r.Status()
	if !st.QueuedSince.Equal(written) {
		t.Errorf("refused %s out of the queue: Status().QueuedSince = %v, want %v (when it was queued)", name, st.QueuedSince, written)
	}
	if !slices.Equal(st.RefusedPartials, []string{name}) {
		t.Errorf("Status().RefusedPartials = %q, want [%s]", st.RefusedPartials, name)
	}
	if !r.Unstored() {
		t.Error("Unstored() = false with the refused .partial in the spool")
	}
	// A pg_upgrade in place (changeSystem) waits for the old system's
	// WAL to be stored before it streams the new one: the refused
	// .partial is not.
	waitCtx, waitCancel := context.WithTimeout(ctx, 3*drainPoll)
	err = r.waitUploads(waitCtx)
	waitCancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waitUploads = %v with the refused %s not stored, want it still waiting (context.DeadlineExceeded)", err, name)
	}
	// What a stop reports left in the spool (the log, resumeError).
	if n := r.unstoredFiles(); n != 1 {
		t.Errorf("unstoredFiles() = %d with the refused %s in the spool, want 1", n, name)
	}
	close(stop)
	<-loopDone

	// Stored at a retry: nothing waits any more.
	up.refuse.Store(false)
	r.retryMin, r.retryMax = 20*time.Millisecond, 200*time.Millisecond
	stop = make(chan struct{})
	loopDone = make(chan struct{})
	go func() { defer close(loopDone); r.uploadLoop(ctx, stop) }()
	r.enqueueWritten(uploadTask{kind: taskPartial, name: name})
	waitFor(t, "the .partial stored", func() bool { return up.stored.Load() == 1 && r.queue.len() == 0 })
	st = r.Status()
	if !st.QueuedSince.IsZero() || len(st.RefusedPartials) != 0 || st.LastErr != nil {
		t.Errorf("stored: QueuedSince %v, RefusedPartials %q, LastErr %v, want zero, none, nil", st.QueuedSince, st.RefusedPartials, st.LastErr)
	}
	if r.Unstored() {
		t.Error("Unstored() = true once the .partial is stored")
	}
	if err := r.waitUploads(ctx); err != nil {
		t.Errorf("waitUploads = %v once the .partial is stored", err)
	}
	if n := r.unstoredFiles(); n != 0 {
		t.Errorf("unstoredFiles() = %d once the .partial is stored, want 0", n)
	}
	close(stop)
	<-loopDone
}
