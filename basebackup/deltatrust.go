package basebackup

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// A delta object's name is predictable from the file it holds, so an
// object that exists under the digest of a file this backup holds is not
// proof that it holds the file (archive/deltacheck.go). The backup
// reuses one without reading it only when a delta backup of the site
// refers to it (deltaTrust); any other (planted, left by a backup that
// died, or stored by one running now) it reads back first
// (archive.Archive.CheckDeltaObject). One that holds the file's bytes is
// reused; one that does not, or that this configuration cannot decode
// (the public key only), holds nobody's good data that is not also ours:
// the backup stores its own object over it (Store.Put, whole or nothing),
// reads it back like any other it did not write, and checks it again,
// like the reused ones, once no retention run can delete it any more
// (settleReused): a retention run that planned before this backup began
// may have planned to delete the planted object as unreferenced.

// deltaTrust is the set of delta objects this site's delta backups refer
// to, read lazily: the previous delta backup's, then older ones' only for
// a digest not found yet.
type deltaTrust struct {
	a     *archive.Archive
	mu    sync.Mutex
	known map[string]bool
	rest  []*archive.BackupInfo // delta backups not read yet, newest first
	// skipped names the backups whose references could not be read,
	// with why, for the log.
	skipped func(b *archive.BackupInfo, err error)
}

// newDeltaTrust returns the trust of the delta backups among bs (oldest
// first, as listed).
func newDeltaTrust(a *archive.Archive, bs []*archive.BackupInfo, skipped func(*archive.BackupInfo, error)) *deltaTrust {
	t := &deltaTrust{a: a, known: map[string]bool{}, skipped: skipped}
	for i := len(bs) - 1; i >= 0; i-- {
		if b := bs[i]; b.Format == archive.FormatDeltaV2 || b.Format == archive.FormatDeltaV1 {
			t.rest = append(t.rest, b)
		}
	}
	return t
}

// add records the delta objects of backup b's manifest, read already.
func (t *deltaTrust) add(b *archive.BackupInfo, dm *archive.DeltaManifest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range dm.SnapshotResult.State.Files {
		if f.Hexdigest != "" {
			t.known[f.Hexdigest] = true
		}
	}
	for i, r := range t.rest {
		if r == b {
			t.rest = append(t.rest[:i], t.rest[i+1:]...)
			break
		}
	}
}

// has reports whether a delta backup of the site refers to digest,
// reading the references of backups not read yet, newest first, until
// one does. A backup whose references cannot be read refers to nothing
// here: its objects are read back before they are reused.
func (t *deltaTrust) has(ctx context.Context, digest string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for !t.known[digest] && len(t.rest) > 0 {
		b := t.rest[0]
		t.rest = t.rest[1:]
		refs, err := t.a.BackupDeltaRefs(ctx, b)
		if err != nil {
			t.skipped(b, err)
			continue
		}
		for d := range refs {
			t.known[d] = true
		}
	}
	return t.known[digest]
}

// existing decides the delta object of digest, o as Stat found it, for a
// file of size bytes: reused (ok) when a backup of the site refers to it
// or it reads back as the file's bytes, with its stored size; else why it
// may not be. An error is the store's.
func (w *worker) existing(ctx context.Context, digest string, o storage.Object, size int64) (stored int64, ok bool, why string, err error) {
	l := w.l
	if l.deltaState.trust.has(ctx, digest) {
		return o.Size, true, "", nil
	}
	if why, bad := l.deltaState.badObject(digest); bad {
		return 0, false, why, nil
	}
	o, err = l.o.Archive.CheckDeltaObject(ctx, digest, size)
	var de *archive.DeltaObjectError
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return 0, false, "it went while it was read back", nil
	case errors.As(err, &de):
		why = de.Err.Error()
		if errors.Is(err, archive.ErrNoPrivateKey) {
			why = "no backup of the site refers to it, and it cannot be read back here (" + why + ")"
		}
		l.deltaState.setBad(digest, why)
		return 0, false, why, nil
	case err != nil:
		return 0, false, "", fmt.Errorf("basebackup: check delta object: %w", err)
	}
	return o.Size, true, "", nil
}

// badObject returns why digest's existing object was found not to hold
// its bytes in this backup, if it was.
func (d *deltaBackup) badObject(digest string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	why, ok := d.bad[digest]
	return why, ok
}

// setBad records why digest's existing object does not hold its bytes;
// "" forgets it, once this backup stored its own.
func (d *deltaBackup) setBad(digest, why string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if why == "" {
		delete(d.bad, digest)
	} else {
		d.bad[digest] = why
	}
}

// replace stores st over the existing object of its digest, which does
// not hold the digest's bytes (why), and checks what the store then holds:
// read back as digest's bytes where this configuration can decode it, of
// the size stored otherwise. A store that holds something else then (a
// writer racing this one) fails the backup.
func (w *worker) replace(ctx context.Context, st *staged, why string) error {
	l := w.l
	a := l.o.Archive
	r := st.r
	key := a.Layout.DeltaKey(r.digest)
	l.log.Warn().Str("key", key).Str("file", r.e.name()).Str("reason", why).
		Msg("delta object under this file's digest does not hold its bytes: stored over it")
	src, err := st.upload(l.o.TempDir)
	if err != nil {
		return err
	}
	if err := a.Store.Put(storage.WithMaxSize(ctx, st.stored.StoredSize), key, src, st.stored.Metadata); err != nil {
		return fmt.Errorf("basebackup: store delta object %s over one that does not hold its bytes: %w", key, err)
	}
	o, err := a.CheckDeltaObject(ctx, r.digest, r.size)
	var de *archive.DeltaObjectError
	switch {
	case errors.As(err, &de) && errors.Is(err, archive.ErrNoPrivateKey) && o.Size == st.stored.StoredSize:
		// The public key only: what it can see is the size it stored.
	case err != nil:
		return fmt.Errorf("basebackup: delta object %s, stored over one that did not hold its bytes, does not read back as them (does someone else write under that name?): %w", key, err)
	}
	l.deltaState.setBad(r.digest, "")
	r.stored, r.replaced = st.stored.StoredSize, true
	return nil
}
