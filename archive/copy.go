package archive

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
)

// CopyOptions says what Copy copies where.
type CopyOptions struct {
	From, To *Archive // the site to copy and the site to copy it into
	Parallel int      // objects copied at once (default 4)
	// VerifyExisting reads back every object the target already has, with
	// the same size and metadata, and compares its bytes with the source's
	// instead of taking size and metadata as proof.
	VerifyExisting bool
	// Progress, if set, is called after each object with the stored bytes
	// done (copied, skipped or failed) and the total to do.
	Progress func(done, total int64)
	Logger   zerolog.Logger
}

// CopyResult counts what Copy did.
type CopyResult struct {
	Objects     int   // objects in the source site
	Bytes       int64 // their stored bytes
	Copied      int   // objects stored in the target
	CopiedBytes int64
	Skipped     int // objects the target already had, identical
	// Decoded of the copies (and of the skipped objects read back) were
	// decoded in full: decrypted, HMAC checked, decompressed, sizes
	// checked. HashOnly were checked by their bytes alone: encrypted with a
	// key neither configuration has the private half of.
	Decoded, HashOnly int
	// Conflicts are keys the target holds with other bytes or metadata:
	// they are left alone, never overwritten.
	Conflicts []string
	// Failed are objects that could not be copied or whose copy failed its
	// checks, with the reason.
	Failed []CopyFailure
	// LeftOut counts the objects under the From site's prefix outside its
	// folders (SiteDirs), not copied: another site's, whose prefix lies
	// below this one's (site s/t beside site s), or objects no site
	// stores. The first is logged.
	LeftOut int
}

// CopyFailure is one object Copy could not copy and verify.
type CopyFailure struct {
	Key string
	Err error
}

// Copy copies every object of the From site into the To site, under the
// To site's prefix, object by object with its metadata, and checks each
// copy: it reads the copy back and compares its SHA-256 with the bytes
// read from the source, and decodes it (decryption with its HMAC,
// decompression, original-file-size) when the private key is in either
// site's codec; an encrypted object without its key is checked by its
// bytes alone (HashOnly). A copy whose bytes differ is deleted.
//
// Only the objects in the site's folders (SiteDirs) are copied: what else
// lies under its prefix is not the site's (CopyResult.LeftOut).
//
// Objects the target already has with the same size and metadata are
// skipped (read back and compared first with VerifyExisting), so a Copy
// that was interrupted, even by SIGKILL (a store never shows half an
// object), continues where it stopped when run again. A target object with
// other bytes or metadata is a conflict, reported and never overwritten.
//
// Backups' control objects are copied last, after the WAL and every chunk,
// so that an interrupted copy never shows a backup in the target whose
// chunks are missing. An error from the stores' listings, or ctx, stops
// Copy; a failure of one object is recorded and the others go on.
func Copy(ctx context.Context, o CopyOptions) (CopyResult, error) {
	var res CopyResult
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	from, to := siteRoot(o.From.Layout), siteRoot(o.To.Layout)
	var objs []storage.Object
	if err := o.From.Store.List(ctx, from, func(ob storage.Object) error {
		if dir, _, _ := strings.Cut(strings.TrimPrefix(ob.Key, from), "/"); !slices.Contains(SiteDirs, dir) {
			if res.LeftOut == 0 {
				o.Logger.Warn().Str("key", ob.Key).Str("site", o.From.Site).
					Msg("archive-copy leaves out objects under the site's prefix outside its folders: another site's, whose prefix lies below this one's, or no site's")
			}
			res.LeftOut++
			return nil
		}
		objs = append(objs, ob)
		return nil
	}); err != nil {
		return res, fmt.Errorf("list site %s: %w", o.From.Site, err)
	}
	// Control objects (directly under basebackup/) after everything else.
	control := o.From.Layout.Dir(BasebackupDir)
	isControl := func(k string) bool {
		rest, ok := strings.CutPrefix(k, control)
		return ok && !strings.Contains(rest, "/")
	}
	sort.SliceStable(objs, func(i, j int) bool { return !isControl(objs[i].Key) && isControl(objs[j].Key) })
	for _, ob := range objs {
		res.Objects++
		res.Bytes += ob.Size
	}

	codec := &Codec{PrivateKeys: map[string]*rsa.PrivateKey{}}
	for _, c := range []*Codec{o.To.Codec, o.From.Codec} {
		if c == nil {
			continue
		}
		for id, k := range c.PrivateKeys {
			codec.PrivateKeys[id] = k
		}
	}
	c := &copier{o: o, codec: codec, from: from, to: to}
	// The control objects wait until every other object is copied.
	split := sort.Search(len(objs), func(i int) bool { return isControl(objs[i].Key) })
	c.run(ctx, objs[:split], &res)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	// A backup whose chunk, or WAL, failed to copy must not look complete
	// in the target: its control object stays behind. So must a backup
	// whose chunk the target holds with other bytes (a conflict): the
	// target would list the backup with a chunk that is not its own.
	var controls []storage.Object
	blocked := blockedBackups(o.From.Layout, res.Failed)
	conflicted := chunkConflicts(o.From.Layout, res.Conflicts)
	for _, ob := range objs[split:] {
		name := BackupName(strings.TrimPrefix(ob.Key, control))
		if blocked[""] || blocked[name] {
			res.Failed = append(res.Failed, CopyFailure{Key: ob.Key, Err: errors.New("control object not copied: an object this backup needs failed")})
			continue
		}
		if conflicted[name] {
			res.Failed = append(res.Failed, CopyFailure{Key: ob.Key, Err: errors.New("control object not copied: the target holds a chunk of this backup with other bytes or metadata (listed as a conflict)")})
			continue
		}
		controls = append(controls, ob)
	}
	c.run(ctx, controls, &res)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	sort.Strings(res.Conflicts)
	sort.Slice(res.Failed, func(i, j int) bool { return res.Failed[i].Key < res.Failed[j].Key })
	return res, nil
}

// blockedBackups returns the names of the backups a failed object belongs
// to (a chunk under basebackup_chunk/<name>/ or basebackup_delta_chunk/
// <name>/), and "" when a failed object may be needed by any backup (WAL, a
// history file, a delta object).
func blockedBackups(l Layout, failed []CopyFailure) map[string]bool {
	out := map[string]bool{}
	for _, f := range failed {
		name := ""
		for _, dir := range []string{l.Dir(BasebackupChunkDir), l.Dir("basebackup_delta_chunk")} {
			if rest, ok := strings.CutPrefix(f.Key, dir); ok {
				name, _, _ = strings.Cut(rest, "/")
			}
		}
		out[name] = true
	}
	return out
}

// chunkConflicts returns the names of the backups a conflicting chunk
// belongs to. A conflicting WAL segment or history file blocks no backup:
// the target may hold the same WAL encoded anew (a daemon already
// archiving into it), which restores as well.
func chunkConflicts(l Layout, conflicts []string) map[string]bool {
	var fs []CopyFailure
	for _, k := range conflicts {
		fs = append(fs, CopyFailure{Key: k})
	}
	out := blockedBackups(l, fs)
	delete(out, "")
	return out
}

// siteRoot is the key prefix of everything a site stores.
func siteRoot(l Layout) string {
	if l.Prefix == "" {
		return ""
	}
	return strings.TrimSuffix(l.Prefix, "/") + "/"
}

// copyOutcome is what happened to one object.
type copyOutcome struct {
	key               string
	size              int64
	copied, skipped   bool
	decoded, hashOnly bool
	conflict          bool
	err               error
}

func (r *CopyResult) add(c copyOutcome) {
	switch {
	case c.err != nil:
		r.Failed = append(r.Failed, CopyFailure{Key: c.key, Err: c.err})
	case c.conflict:
		r.Conflicts = append(r.Conflicts, c.key)
	case c.copied:
		r.Copied++
		r.CopiedBytes += c.size
	case c.skipped:
		r.Skipped++
	}
	if c.err == nil && c.decoded {
		r.Decoded++
	}
	if c.err == nil && c.hashOnly {
		r.HashOnly++
	}
}

type copier struct {
	o        CopyOptions
	codec    *Codec
	from, to string
	done     atomic.Int64 // stored bytes done, for Progress
}

// run copies objs with o.Parallel workers, adding to res.
func (c *copier) run(ctx context.Context, objs []storage.Object, res *CopyResult) {
	var mu sync.Mutex
	work := make(chan storage.Object)
	var wg sync.WaitGroup
	for range min(c.o.Parallel, max(len(objs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ob := range work {
				r := c.one(ctx, ob)
				mu.Lock()
				res.add(r)
				total := res.Bytes
				mu.Unlock()
				n := c.done.Add(ob.Size)
				if c.o.Progress != nil {
					c.o.Progress(n, total)
				}
			}
		}()
	}
feed:
	for _, ob := range objs {
		select {
		case work <- ob:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
}

// one copies and checks one object.
func (c *copier) one(ctx context.Context, ob storage.Object) copyOutcome {
	target := c.to + strings.TrimPrefix(ob.Key, c.from)
	log := c.o.Logger.With().Str("key", ob.Key).Logger()
	existing, err := c.o.To.Store.Stat(ctx, target)
	switch {
	case err == nil:
		return c.existing(ctx, ob, target, existing, log)
	case !errors.Is(err, storage.ErrNotFound):
		return copyOutcome{key: ob.Key, size: ob.Size, err: fmt.Errorf("stat target: %w", err)}
	}
	out := c.copy(ctx, ob, target, log)
	if errors.Is(out.err, storage.ErrExist) {
		// Stored by another writer since the Stat: compared, never
		// replaced.
		if existing, err = c.o.To.Store.Stat(ctx, target); err != nil {
			return copyOutcome{key: ob.Key, size: ob.Size, err: fmt.Errorf("stat target: %w", err)}
		}
		return c.existing(ctx, ob, target, existing, log)
	}
	return out
}

// existing checks an object the target already holds under the copy's
// name: the same size and metadata, and with VerifyExisting the same
// bytes, make it skipped; anything else is a conflict, left alone.
func (c *copier) existing(ctx context.Context, ob storage.Object, target string, existing storage.Object, log zerolog.Logger) copyOutcome {
	out := copyOutcome{key: ob.Key, size: ob.Size}
	src, err := c.o.From.Store.Stat(ctx, ob.Key)
	if err != nil {
		out.err = fmt.Errorf("stat source: %w", err)
		return out
	}
	if existing.Size != src.Size || !sameMetadata(existing.Metadata, src.Metadata) {
		log.Error().Str("target", target).Msg("target holds another object under this name: left alone")
		out.conflict = true
		return out
	}
	if !c.o.VerifyExisting {
		out.skipped = true
		return out
	}
	sum, _, err := hashObject(ctx, c.o.From.Store, ob.Key)
	if err != nil {
		out.err = fmt.Errorf("read source: %w", err)
		return out
	}
	if out.decoded, out.hashOnly, err = c.check(ctx, target, sum); err != nil {
		if errors.Is(err, errCopyDiffers) {
			log.Error().Err(err).Str("target", target).Msg("target holds another object under this name: left alone")
			out.conflict = true
			return out
		}
		out.err = err
		return out
	}
	out.skipped = true
	return out
}

// copy stores the source object ob under target, only if target holds
// nothing (storage.Store.Create: a target site in use may store the same
// name meanwhile, and an archived object is never replaced), then checks
// the copy. An unencrypted object that the source site's codec refuses
// (Codec.RequireEncryption: its site encrypts, and the storage wrote it
// after unencrypted_objects_before) is not copied: the target's storage
// would record the copy's time as new, and the copy must not make it look
// older than it is.
func (c *copier) copy(ctx context.Context, ob storage.Object, target string, log zerolog.Logger) copyOutcome {
	out := copyOutcome{key: ob.Key, size: ob.Size}
	rc, src, err := c.o.From.Store.Open(ctx, ob.Key)
	if err != nil {
		out.err = fmt.Errorf("open source: %w", err)
		return out
	}
	// A delta backup's reference list is plaintext by design, and
	// authenticated by its MAC, not by encryption.
	if src.Metadata[MetaEncryptionKeyID] == "" && src.Metadata[MetaFormat] != FormatDeltaRefs {
		if c.o.From.Codec != nil {
			if err := c.o.From.Codec.checkEncrypted(ob.Key, src.Changed); err != nil {
				rc.Close()
				out.err = err
				return out
			}
		}
		// The target site would refuse the copy, which its storage
		// writes now (a site without encryption copied into one with
		// keys), and the copy would look good until a restore from it.
		// Its unencrypted_objects_before, moved past the copy, admits
		// it; the cutoff cannot be set ahead of time.
		if c.o.To.Codec != nil {
			if err := c.o.To.Codec.checkEncrypted(target, time.Now()); err != nil {
				rc.Close()
				out.err = fmt.Errorf("not copied: the target site has encryption keys and would refuse this unencrypted copy (%w): "+
					"copy with a --to-config whose site has no encryption keys, then add the keys and set unencrypted_objects_before to a time after the copy", err)
				return out
			}
		}
	}
	h := sha256.New()
	// The source's size lets an object store size its upload buffers for
	// the copy (a few MiB of parts on S3, not the parts of an object of
	// any size).
	err = c.o.To.Store.Create(storage.WithMaxSize(ctx, src.Size), target, io.TeeReader(rc, h), src.Metadata)
	rc.Close()
	if err != nil {
		out.err = fmt.Errorf("store %s: %w", target, err)
		return out
	}
	if out.decoded, out.hashOnly, err = c.check(ctx, target, h.Sum(nil)); err != nil {
		// A copy that differs, or that decodes no better than the source,
		// goes: a later run would take it for done and skip it.
		if errors.Is(err, errCopyDiffers) || errors.Is(err, errUndecodable) {
			if derr := c.o.To.Store.Delete(context.WithoutCancel(ctx), target); derr != nil {
				err = fmt.Errorf("%w; deleting the copy failed too: %v", err, derr)
			}
		}
		out.err = err
		return out
	}
	out.copied = true
	log.Debug().Int64("size", ob.Size).Msg("copied")
	return out
}

// errCopyDiffers is a copy whose stored bytes are not the source's;
// errUndecodable one that holds the source's bytes, which do not decode.
var (
	errCopyDiffers = errors.New("copy differs from the source")
	errUndecodable = errors.New("the source object does not decode")
)

// check reads the target object once: its SHA-256 must be sum, and it is
// decoded when its key is known.
func (c *copier) check(ctx context.Context, target string, sum []byte) (decoded, hashOnly bool, err error) {
	rc, obj, err := c.o.To.Store.Open(ctx, target)
	if err != nil {
		return false, false, fmt.Errorf("read back %s: %w", target, err)
	}
	md := obj.Metadata
	defer rc.Close()
	h := sha256.New()
	stored := io.TeeReader(rc, h)
	if kid := md[MetaEncryptionKeyID]; kid != "" && c.codec.PrivateKeys[kid] == nil {
		if _, err := io.Copy(io.Discard, stored); err != nil {
			return false, false, fmt.Errorf("read back %s: %w", target, err)
		}
		hashOnly = true
	} else {
		dec, err := c.codec.DecodeObject(target, stored, obj)
		if err == nil {
			_, err = io.Copy(io.Discard, dec)
			dec.Close()
		}
		// What the decoder left unread, after the end or after a failure,
		// still counts for the hash.
		if _, rerr := io.Copy(io.Discard, stored); rerr != nil {
			return false, false, fmt.Errorf("read back %s: %w", target, rerr)
		}
		var de *DecodeError
		switch {
		case err != nil && !errors.As(err, &de):
			return false, false, fmt.Errorf("read back %s: %w", target, err)
		case err != nil && bytes.Equal(h.Sum(nil), sum):
			return false, false, fmt.Errorf("%w: %w", errUndecodable, err)
		}
		decoded = err == nil
	}
	if !bytes.Equal(h.Sum(nil), sum) {
		return false, false, fmt.Errorf("%s: %w", target, errCopyDiffers)
	}
	return decoded, hashOnly, nil
}

// hashObject returns the SHA-256 of an object's stored bytes.
func hashObject(ctx context.Context, st storage.Store, key string) ([]byte, storage.Metadata, error) {
	rc, obj, err := st.Open(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return nil, nil, err
	}
	return h.Sum(nil), obj.Metadata, nil
}

// sameMetadata compares metadata as backends hand it back: keys without
// case (S3 and Swift lowercase them), empty values as absent.
func sameMetadata(a, b storage.Metadata) bool {
	norm := func(m storage.Metadata) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if v != "" {
				out[strings.ToLower(k)] = v
			}
		}
		return out
	}
	x, y := norm(a), norm(b)
	if len(x) != len(y) {
		return false
	}
	for k, v := range x {
		if y[k] != v {
			return false
		}
	}
	return true
}
