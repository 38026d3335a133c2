package storage

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ncw/swift/v2"
)

var _ Store = (*Swift)(nil)

// Swift is a Store on an OpenStack Swift container, laid out as rohmu lays
// it out, so that PGHoard and hoard read each other's objects:
//
//   - the object for key K is the Swift object <prefix>/K, its metadata the
//     X-Object-Meta-<name> headers (names lowercased, values as given);
//   - an object larger than fits in one request is a Dynamic Large Object:
//     segments <dir>_segments/<base>/<upload>/<n> (n as 8 hex digits from
//     1, <dir>/<base> the object's name) and, last, a zero-byte manifest
//     under the object's name whose X-Object-Manifest names the segments'
//     container and prefix and which carries the metadata. rohmu puts the
//     segments right under <dir>_segments/<base>/; hoard adds the upload's
//     own folder so that a new upload never writes over the segments of an
//     object that is still stored, and when it replaces rohmu's large
//     object, whose prefix holds every such folder, uses
//     <dir>_segments/<base>.<upload>/ instead (see uploadFolder). All
//     forms read and delete the same way.
type Swift struct {
	c         *swift.Connection
	container string
	prefix    string        // object_storage.prefix with a trailing '/', or ""
	segSize   int64         // bytes per segment of a large object
	readAhead int           // bytes read before choosing one PUT or segments
	stall     time.Duration // StallTimeout when opened: downloads' own (stallReader)

	containerOK atomic.Bool // the container answered once
	secrets     []string

	// OnSkip, if set, is called by Delete, and by a Put that replaces
	// a large object, for an object whose segments are not deleted
	// with it because they may be other objects: an X-Object-Manifest
	// that names anything but the object's own segment folders
	// (ownSegments), or a Static Large Object, whose segment list may
	// name any object. Neither hoard nor rohmu writes such an object:
	// someone who can write the container but not delete from it may
	// have planted it to have hoard's retention delete what it names.
	// The manifest object alone is deleted or replaced. OnSkip gets the
	// key and a sentence naming the header's value and what was left;
	// callers log it as a warning.
	OnSkip func(key, why string)
}

// swiftReadAhead bounds the memory a Put holds: an object that ends within
// it goes up in one PUT (with its MD5 as the ETag, checked by Swift),
// a longer one as segments streamed from the source.
const swiftReadAhead = 32 << 20

// swiftDataTimeout is how long a Swift upload may move no byte: one whose
// server stops taking bytes or whose source stops giving them fails after
// it. It is longer than StallTimeout because an upload streams its
// segments from hoard's source (a basebackup stream, a rate limit), which
// may pause; HTTP stores send parts already read into memory. Downloads
// fail after StallTimeout (stallReader).
var swiftDataTimeout = 5 * time.Minute

// swiftDefaultSegment is rohmu's default segment size (3 GiB); Swift's own
// limit on one object is 5 GiB unless the cluster says otherwise.
const swiftDefaultSegment = 3 << 30

// swiftSegments is the suffix of the folders that hold segments; hoard
// refuses keys with such a folder, and List never shows what is in one.
const swiftSegments = "_segments"

// openSwift checks c and returns a Swift store. It does not contact the
// server: authentication happens on first use.
func openSwift(c Config) (*Swift, error) {
	version, err := swiftAuthVersion(c.AuthVersion)
	if err != nil {
		return nil, err
	}
	endpoint, err := swiftEndpoint(c.EndpointType)
	if err != nil {
		return nil, err
	}
	if c.SegmentSize < 0 {
		return nil, fmt.Errorf("open swift storage: segment_size %d is negative", c.SegmentSize)
	}
	conn := &swift.Connection{
		UserName:     c.User,
		ApiKey:       c.Key,
		AuthUrl:      c.AuthURL,
		AuthVersion:  version,
		Region:       c.RegionName,
		UserId:       c.UserID,
		Domain:       c.UserDomainName,
		DomainId:     c.UserDomainID,
		Tenant:       c.TenantName,
		TenantId:     c.TenantID,
		EndpointType: endpoint,
		Timeout:      swiftDataTimeout,
		UserAgent:    "hoard",
	}
	if version == 3 {
		// Keystone v3 names a project; rohmu passes tenant_name too.
		if c.ProjectName != "" {
			conn.Tenant = c.ProjectName
		}
		if c.ProjectID != "" {
			conn.TenantId = c.ProjectID
		}
		conn.TenantDomain = c.ProjectDomainName
		conn.TenantDomainId = c.ProjectDomainID
	}
	seg := c.SegmentSize
	if seg == 0 {
		seg = swiftDefaultSegment
	}
	prefix := strings.Trim(c.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &Swift{
		c:         conn,
		container: c.ContainerName,
		prefix:    prefix,
		segSize:   seg,
		readAhead: int(min(seg, swiftReadAhead)),
		stall:     StallTimeout,
		secrets:   []string{c.Key},
	}, nil
}

// SwiftAuthVersions are the auth_version values: rohmu's 2.0 (Keystone
// v2, the default), 3.0 (Keystone v3) and 1.0 (v1 auth such as tempauth
// and RadosGW), each also without its ".0".
var SwiftAuthVersions = []string{"1", "1.0", "2", "2.0", "3", "3.0"}

// swiftAuthVersion reads auth_version.
func swiftAuthVersion(v string) (int, error) {
	if v == "" {
		return 2, nil
	}
	if !slices.Contains(SwiftAuthVersions, v) {
		return 0, fmt.Errorf("open swift storage: auth_version %q: want 1.0, 2.0 or 3.0", v)
	}
	return int(v[0] - '0'), nil
}

// SwiftEndpointTypes are the endpoint_type values: python-swiftclient's
// (publicURL, the default, internalURL, adminURL) and Keystone v3's.
var SwiftEndpointTypes = []string{"publicURL", "internalURL", "adminURL", "public", "internal", "admin"}

// swiftEndpoint reads endpoint_type.
func swiftEndpoint(v string) (swift.EndpointType, error) {
	if v != "" && !slices.Contains(SwiftEndpointTypes, v) {
		return "", fmt.Errorf("open swift storage: endpoint_type %q: want publicURL, internalURL or adminURL", v)
	}
	return swift.EndpointType(strings.TrimSuffix(cmp.Or(v, "public"), "URL")), nil
}

// name checks key and returns the object's name in the container.
func (s *Swift) name(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") {
		return "", fmt.Errorf("invalid key %q", key)
	}
	if segmentKey(key) {
		return "", fmt.Errorf("invalid key %q: a folder ending in %s holds Swift large-object segments", key, swiftSegments)
	}
	return s.prefix + key, nil
}

// segmentKey reports whether key lies in a segments folder: a folder whose
// name ends in _segments. PGHoard's keys have none (site, xlog, timeline,
// basebackup, basebackup_chunk and the backups' names).
func segmentKey(key string) bool {
	parts := strings.Split(key, "/")
	for _, p := range parts[:len(parts)-1] {
		if strings.HasSuffix(p, swiftSegments) {
			return true
		}
	}
	return false
}

// segmentFolder returns rohmu's segments folder of an object name:
// <dir>_segments/<base>/.
func segmentFolder(name string) string {
	dir, base := path.Split(name)
	return strings.TrimSuffix(dir, "/") + swiftSegments + "/" + base + "/"
}

// auth authenticates once, so that bad credentials are told apart from a
// request refused later.
func (s *Swift) auth(ctx context.Context) error {
	if s.c.Authenticated() {
		return nil
	}
	if err := s.c.Authenticate(ctx); err != nil {
		err = s.redact(err)
		var se *swift.Error
		if ctx.Err() == nil && errors.As(err, &se) && (se.StatusCode == http.StatusUnauthorized || se.StatusCode == http.StatusForbidden) {
			return &permanentError{msg: fmt.Sprintf("swift authentication at %s refused: check user, key, auth_version and the tenant, project and domain keys", s.c.AuthUrl), err: err}
		}
		return fmt.Errorf("swift authentication at %s: %w", s.c.AuthUrl, err)
	}
	return nil
}

func (s *Swift) redact(err error) error {
	return &redactedError{err: err, secrets: s.secrets}
}

// errorf wraps a Swift error for operation op on key: a missing object
// becomes ErrNotFound once the container is known to exist, a refusal
// ErrPermanent, a failed If-None-Match ErrExist.
func (s *Swift) errorf(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%s %s: %w (%v)", op, key, cerr, s.redact(err))
	}
	var se *swift.Error
	if !errors.As(err, &se) {
		var pe *permanentError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s %s: %w", op, key, err)
		}
		return fmt.Errorf("%s %s: %w", op, key, s.redact(err))
	}
	switch se.StatusCode {
	case http.StatusNotFound:
		// Stat answers "not found" in a container that does not exist
		// yet, so that a first upload (which creates it) can check that
		// its key is free; reads of content need the container.
		if op != "stat" {
			if cerr := s.checkContainer(ctx); cerr != nil {
				return fmt.Errorf("%s %s: %w", op, key, cerr)
			}
		}
		return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	case http.StatusPreconditionFailed:
		return fmt.Errorf("%s %s: %w", op, key, ErrExist)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%s %s: %w", op, key, &permanentError{
			msg: fmt.Sprintf("access denied to swift container %q: check the user's roles on it (or user, key and the project keys)", s.container),
			err: s.redact(err)})
	case http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%s %s: %w", op, key, &permanentError{
			msg: "swift refused the object as too large: lower segment_size below the cluster's max_file_size", err: s.redact(err)})
	case http.StatusBadRequest:
		return fmt.Errorf("%s %s: %w", op, key, &permanentError{msg: "swift refused the request", err: s.redact(err)})
	}
	return fmt.Errorf("%s %s: %w", op, key, s.redact(err))
}

// checkContainer returns nil when the container exists, ErrPermanent when
// it does not, so that a wrong container_name never reads as "no such WAL
// segment".
func (s *Swift) checkContainer(ctx context.Context) error {
	if s.containerOK.Load() {
		return nil
	}
	_, _, err := s.c.Container(ctx, s.container)
	var se *swift.Error
	switch {
	case err == nil:
		s.containerOK.Store(true)
		return nil
	case errors.Is(err, swift.ContainerNotFound) || errors.As(err, &se) && se.StatusCode == http.StatusNotFound:
		return &permanentError{msg: fmt.Sprintf("swift container %q does not exist: fix container_name (hoard creates it on the first upload)", s.container), err: err}
	}
	return fmt.Errorf("check swift container %q: %w", s.container, s.redact(err))
}

// ensureContainer creates the container if it is missing, as rohmu does
// when it starts.
func (s *Swift) ensureContainer(ctx context.Context) error {
	if s.containerOK.Load() {
		return nil
	}
	_, _, err := s.c.Container(ctx, s.container)
	if errors.Is(err, swift.ContainerNotFound) {
		err = s.c.ContainerCreate(ctx, s.container, nil)
	}
	if err != nil {
		return s.errorf(ctx, "create container", s.container, err)
	}
	s.containerOK.Store(true)
	return nil
}

// wireMetadata returns the metadata headers: keys lowercased, empty
// values dropped. A value HTTP cannot carry unchanged is an error rather
// than metadata that reads back different.
func wireSwiftMetadata(md Metadata) (swift.Headers, error) {
	h := swift.Headers{}
	for k, v := range md {
		if v == "" {
			continue
		}
		if k == "" || strings.ContainsAny(k, " \t\r\n:_") {
			return nil, fmt.Errorf("metadata key %q cannot be a swift header name", k)
		}
		if v != strings.TrimSpace(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("metadata %s: value %q cannot travel in a swift header unchanged", k, v)
		}
		h["X-Object-Meta-"+strings.ToLower(k)] = v
	}
	return h, nil
}

// readSwiftMetadata returns the metadata in response headers.
func readSwiftMetadata(h swift.Headers) Metadata {
	md := Metadata{}
	for k, v := range h {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-object-meta-") {
			md[strings.TrimPrefix(lk, "x-object-meta-")] = v
		}
	}
	return md
}

// Put stores r under key, replacing any object there. See put.
func (s *Swift) Put(ctx context.Context, key string, r io.Reader, md Metadata) error {
	return s.put(ctx, "put", key, r, md, false)
}

// Create stores r under key only if no object is there: the object, or a
// large object's manifest, is written with If-None-Match: *. A large
// object's Create looks first and returns ErrExist before any segment
// goes up when the name is taken. See put.
//
// Swift checks If-None-Match when a PUT reaches the object server, not
// atomically with the write: two PUTs of one name that start before either
// ends both pass the check, both succeed, and the one with the later
// timestamp replaces the other (seen with Swift 2.x's all-in-one in
// storetest: several of ten concurrent Creates succeed). Create narrows
// that window: it stores a random hoard-create-id with the object and,
// after the PUT, reads the object's metadata back; another writer's id
// means another write landed after this one, and Create returns ErrExist,
// so its caller compares. A writer whose PUT ends after this check can
// still replace the object: on Swift, do not run two archivers of one site.
func (s *Swift) Create(ctx context.Context, key string, r io.Reader, md Metadata) error {
	id := uploadID()
	tagged := make(Metadata, len(md)+1)
	for k, v := range md {
		tagged[k] = v
	}
	tagged[swiftCreateID] = id
	if err := s.put(ctx, "create", key, r, tagged, true); err != nil {
		return err
	}
	o, err := s.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("create %s: read back: %w", key, err)
	}
	if o.Metadata[swiftCreateID] != id {
		return fmt.Errorf("create %s: another writer stored it at the same time: %w", key, ErrExist)
	}
	return nil
}

// swiftCreateID is the metadata key of Create's upload id.
const swiftCreateID = "hoard-create-id"

// put reads up to readAhead bytes. An object that ends there is one PUT
// with its length and MD5 (Swift checks both). A longer one goes up as
// segments, each streamed from r with chunked encoding and its MD5 checked
// against Swift's ETag, then the container listing is checked to hold
// them all, then the manifest is written. An error from r, or a cancelled
// ctx, aborts the segment in flight (Swift stores nothing of a chunked
// upload that did not end) and deletes the segments already stored; no
// manifest is written, so no object becomes visible and an old one stays.
//
// With ifAbsent the object or manifest is written with If-None-Match: *,
// which Swift refuses (412) when the name exists.
func (s *Swift) put(ctx context.Context, op, key string, r io.Reader, md Metadata, ifAbsent bool) error {
	name, err := s.name(key)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	headers, err := wireSwiftMetadata(md)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	if err := s.auth(ctx); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	if err := s.ensureContainer(ctx); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	var old string // the segments of the object replaced, if it is a large object
	if !ifAbsent {
		_, h, err := s.c.Object(ctx, s.container, name)
		switch {
		case err == nil:
			old = h["X-Object-Manifest"]
		case !errors.Is(err, swift.ObjectNotFound):
			return s.errorf(ctx, op, key, err)
		}
	}
	if ifAbsent {
		headers["If-None-Match"] = "*"
	}
	head, err := io.ReadAll(io.LimitReader(r, int64(s.readAhead)+1))
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	if len(head) <= s.readAhead {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s %s: %w", op, key, err)
		}
		sum := md5.Sum(head)
		headers["Content-Length"] = strconv.Itoa(len(head))
		if _, err := s.c.ObjectPut(ctx, s.container, name, bytes.NewReader(head), false, hex.EncodeToString(sum[:]), "application/octet-stream", headers); err != nil {
			return s.errorf(ctx, op, key, err)
		}
	} else {
		if ifAbsent {
			// The manifest's If-None-Match refuses a taken name only
			// after the segments went up, and rohmu's segments folder
			// of a large object stored under the name holds this
			// upload's (see uploadFolder): they would read as that
			// object's own bytes until then, and for good if this
			// upload were killed before it deleted them.
			_, _, err := s.c.Object(ctx, s.container, name)
			switch {
			case err == nil:
				return fmt.Errorf("%s %s: %w", op, key, ErrExist)
			case !errors.Is(err, swift.ObjectNotFound):
				return s.errorf(ctx, op, key, err)
			}
		}
		folder, err := s.uploadFolder(name, old)
		if err != nil {
			return fmt.Errorf("%s %s: %w", op, key, err)
		}
		if err := s.putLarge(ctx, op, key, name, folder, io.MultiReader(bytes.NewReader(head), r), headers); err != nil {
			return err
		}
	}
	if old != "" {
		s.deleteSegments(context.WithoutCancel(ctx), key, name, old, "replaced")
	}
	return nil
}

// uploadFolder returns the folder of a new upload's segments of object
// name: <dir>_segments/<base>/<upload>/, or <dir>_segments/<base>.<upload>/
// when that lies under the prefix that old, the X-Object-Manifest of the
// object the upload replaces, names, as rohmu's <dir>_segments/<base>/
// does. A Dynamic Large Object is whatever Swift lists under its prefix:
// segments put there would be read as the old object's own bytes until
// the new manifest replaces it, and for good if the upload fails or is
// killed before, and the old object's segments, deleted after the
// replace, would take the new one's with them. A manifest whose prefix
// holds both folders (not one hoard or rohmu writes) fails the upload
// for good.
func (s *Swift) uploadFolder(name, old string) (string, error) {
	id := uploadID()
	seg := segmentFolder(name)
	for _, folder := range []string{seg + id + "/", strings.TrimSuffix(seg, "/") + "." + id + "/"} {
		if container, prefix, ok := parseManifest(old); !ok || container != s.container || !strings.HasPrefix(folder, prefix) {
			return folder, nil
		}
	}
	return "", &permanentError{
		msg: "the large object it replaces names a prefix that holds the new object's segment folders: delete the object first",
		err: fmt.Errorf("X-Object-Manifest %q", old)}
}

// putLarge uploads a Dynamic Large Object: segments in folder, then the
// manifest.
func (s *Swift) putLarge(ctx context.Context, op, key, name, folder string, r io.Reader, headers swift.Headers) error {
	manifest := manifestValue(s.container, folder)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src := &abortReader{ctx: wctx, r: r, cancel: cancel}
	br := bufio.NewReaderSize(src, 64<<10)
	var sizes []int64
	committed := false
	defer func() {
		if !committed {
			s.deleteSegments(context.WithoutCancel(ctx), key, name, manifest, "not written")
		}
	}()
	for n := 1; ; n++ {
		if _, err := br.Peek(1); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("%s %s: %w", op, key, err)
		}
		seg := &CountingReader{R: io.LimitReader(br, s.segSize)}
		segName := fmt.Sprintf("%s%08x", folder, n)
		_, err := s.c.ObjectPut(wctx, s.container, segName, seg, true, "", "application/octet-stream", nil)
		if src.err != nil {
			return fmt.Errorf("%s %s: %w", op, key, src.err)
		}
		if err != nil {
			return s.errorf(ctx, op, key, err)
		}
		sizes = append(sizes, seg.N)
	}
	if err := s.checkSegments(ctx, folder, sizes); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	headers["X-Object-Manifest"] = manifest
	headers["Content-Length"] = "0"
	if _, err := s.c.ObjectPut(ctx, s.container, name, bytes.NewReader(nil), false, "", "application/octet-stream", headers); err != nil {
		// Swift may have stored the manifest and lost only its answer,
		// or store it after this error (a load balancer's timeout, this
		// writer's context, while Swift still works on the request).
		// The object then exists, whole, with this upload's metadata: a
		// retried Create, or a writer that compares its hash
		// (archive.PushWAL, PutPartialWAL), reports it stored. Deleting
		// its segments would leave it empty under that report: they go
		// only when Swift answered that it refuses the write.
		committed = !refused(err)
		return s.errorf(ctx, op, key, err)
	}
	committed = true
	return nil
}

// refused reports whether err is Swift's answer refusing a write, a 4xx
// status (412: the name of a Create holds an object): nothing was stored
// and nothing will be. Swift's proxy answers 412 before it sends any of
// the body to an object server, also for a manifest's empty one, which it
// sends chunked after Expect: 100-continue (swift/proxy/controllers/obj.py:
// _get_put_connections, _check_failure_put_connections). A write without
// an answer (a connection cut, the client's timeout, which ncw/swift
// reports as 408) or with a server error (5xx, which a proxy in front may
// answer while Swift goes on) may have stored it, now or later; so may
// one whose name is seen to hold nothing or the object it replaces, since
// the write may land after the look.
func refused(err error) bool {
	var se *swift.Error
	return errors.As(err, &se) && se.StatusCode >= 400 && se.StatusCode < 500 && se.StatusCode != http.StatusRequestTimeout
}

// checkSegments waits until the container listing shows the segments as
// uploaded: a Dynamic Large Object is what the listing of its folder says,
// and listings can lag behind uploads on a busy cluster.
func (s *Swift) checkSegments(ctx context.Context, folder string, sizes []int64) error {
	var got []int64
	for attempt := 0; ; attempt++ {
		objs, err := s.c.ObjectsAll(ctx, s.container, &swift.ObjectsOpts{Prefix: folder})
		if err != nil {
			return s.errorf(ctx, "list segments", folder, err)
		}
		got = got[:0]
		for _, o := range objs {
			got = append(got, o.Bytes)
		}
		if equalSizes(got, sizes) {
			return nil
		}
		if attempt == 10 {
			return fmt.Errorf("swift lists %d segments (%v bytes) under %s, want %d (%v bytes)", len(got), got, folder, len(sizes), sizes)
		}
		if err := sleep(ctx, time.Duration(attempt+1)*200*time.Millisecond); err != nil {
			return err
		}
	}
}

func equalSizes(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// manifestValue is an X-Object-Manifest value: container/prefix, each
// part URL-escaped, as Swift unescapes it.
func manifestValue(container, folder string) string {
	parts := strings.Split(container+"/"+folder, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// parseManifest splits an X-Object-Manifest value into its container and
// prefix, unescaped as Swift unescapes them.
func parseManifest(manifest string) (container, prefix string, ok bool) {
	container, prefix, ok = strings.Cut(manifest, "/")
	if !ok {
		return "", "", false
	}
	container, err1 := url.PathUnescape(container)
	prefix, err2 := url.PathUnescape(prefix)
	if err1 != nil || err2 != nil {
		return "", "", false
	}
	return container, prefix, true
}

// uploadID names one upload's segment folder: the time, so that folders
// sort by age, and random bits, so that two uploads never share one.
func uploadID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x%s", time.Now().UnixNano(), hex.EncodeToString(b[:]))
}

// deleteSegments deletes the segments that manifest, the X-Object-Manifest
// value of the object called name (key), names, when they lie in the
// object's own segment folders (ownSegments); otherwise it calls OnSkip,
// saying that the manifest was done (deleted, replaced) alone. It is
// clean-up after the manifest is gone or was never written: failures
// leave segments that no listing shows and no object uses.
func (s *Swift) deleteSegments(ctx context.Context, key, name, manifest, done string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if !s.ownSegments(name, manifest) {
		if s.OnSkip != nil {
			seg := segmentFolder(name)
			s.OnSkip(key, fmt.Sprintf("its X-Object-Manifest %q names more than its own segment folders (%s and %s.<upload>/ in container %q), "+
				"which neither hoard nor PGHoard writes: the manifest was %s alone, nothing it names was deleted; "+
				"someone who can write the container may have planted it", manifest, seg, strings.TrimSuffix(seg, "/"), s.container, done))
		}
		return
	}
	container, folder, _ := parseManifest(manifest)
	names, err := s.c.ObjectNamesAll(ctx, container, &swift.ObjectsOpts{Prefix: folder})
	if err != nil {
		return
	}
	for _, n := range names {
		_ = s.c.ObjectDelete(ctx, container, n)
	}
}

// ownSegments reports whether manifest, the X-Object-Manifest of the
// object called name, names a prefix in the object's own segment folders
// in s's container: rohmu's <dir>_segments/<base>/ (hoard's
// <dir>_segments/<base>/<upload>/ lies in it) or hoard's
// <dir>_segments/<base>.<upload>/ (uploadFolder), <upload> an uploadID.
// Keys in a segments folder are refused (segmentKey), so only the
// object's segments lie there. Anything else may name other objects:
// another container, a folder of keys, a prefix that a shorter one such
// as <dir>_segments/<base> shares with the folders of <base>.partial, or
// <dir>_segments/<base>.partial/ itself.
func (s *Swift) ownSegments(name, manifest string) bool {
	container, prefix, ok := parseManifest(manifest)
	if !ok || container != s.container {
		return false
	}
	seg := segmentFolder(name)
	if strings.HasPrefix(prefix, seg) {
		return true
	}
	rest, ok := strings.CutPrefix(prefix, strings.TrimSuffix(seg, "/")+".")
	if !ok {
		return false
	}
	id, _, ok := strings.Cut(rest, "/")
	return ok && isUploadID(id)
}

// isUploadID reports whether id has the form of an uploadID: 28
// lowercase hexadecimal digits.
func isUploadID(id string) bool {
	if len(id) != 28 {
		return false
	}
	for _, r := range id {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// Open streams the object (a large object's segments in order) and
// returns its metadata.
func (s *Swift) Open(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, Object{}, fmt.Errorf("open: %w", err)
	}
	if err := s.auth(ctx); err != nil {
		return nil, Object{}, fmt.Errorf("open %s: %w", key, err)
	}
	rctx, cancel := context.WithCancel(ctx)
	f, h, err := s.c.ObjectOpen(rctx, s.container, name, true, nil)
	if err != nil {
		cancel()
		return nil, Object{}, s.errorf(ctx, "open", key, err)
	}
	// The GET's own headers: the time and size of the bytes read.
	o := Object{Key: key, Metadata: readSwiftMetadata(h)}
	o.Size, _ = strconv.ParseInt(h["Content-Length"], 10, 64)
	if t, err := http.ParseTime(h["Last-Modified"]); err == nil {
		o.Modified, o.Changed = t, t
	}
	return s.body(f, cancel, key), o, nil
}

// body is an opened object's reader, whose request runs under cancel's
// context: it fails when the server sends no byte for the stall timeout
// (stallReader), its MD5 and length are checked at EOF (swiftChecked),
// and its read errors name the object and the container (readError).
func (s *Swift) body(f io.ReadCloser, cancel context.CancelFunc, key string) io.ReadCloser {
	r := &stallReader{ReadCloser: &swiftChecked{f: f}, timeout: s.stall, cancel: cancel}
	return &namedReader{ReadCloser: r, key: key, where: fmt.Sprintf("swift container %q at %s", s.container, s.c.StorageUrl)}
}

// swiftChecked reports from Read, at EOF, what ncw/swift's
// ObjectOpenFile checks only in Close: the MD5 of the bytes read against
// the ETag (not for a large object, whose ETag is not its content's MD5,
// nor for a ranged read) and their count against Content-Length. A
// caller that reads to EOF and commits the bytes before Close (or ignores
// Close's error) would otherwise take a damaged object as sound. A
// mismatch is ErrChecksum: the stored object is wrong, and reading it
// again gives the same bytes.
type swiftChecked struct {
	f      io.ReadCloser
	closed bool
	err    error // what Read returns once f is closed: io.EOF or the mismatch
}

func (r *swiftChecked) Read(p []byte) (int, error) {
	if r.closed {
		return 0, r.err
	}
	n, err := r.f.Read(p)
	if err != io.EOF {
		return n, err
	}
	r.closed, r.err = true, io.EOF
	if cerr := r.f.Close(); errors.Is(cerr, swift.ObjectCorrupted) {
		r.err = fmt.Errorf("%w (Swift's ETag, an MD5, or its Content-Length): %v", ErrChecksum, cerr)
	} else if cerr != nil {
		r.err = cerr
	}
	return n, r.err
}

func (r *swiftChecked) Close() error {
	if r.closed {
		return nil
	}
	r.closed, r.err = true, errors.New("read after close")
	return r.f.Close()
}

// OpenRange streams length bytes from offset (length < 0: to the end).
func (s *Swift) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if err := s.auth(ctx); err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	if length == 0 {
		if _, _, err := s.c.Object(ctx, s.container, name); err != nil {
			return nil, s.errorf(ctx, "open", key, err)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	rng := fmt.Sprintf("bytes=%d-", offset)
	if length > 0 {
		rng += strconv.FormatInt(offset+length-1, 10)
	}
	rctx, cancel := context.WithCancel(ctx)
	f, _, err := s.c.ObjectOpen(rctx, s.container, name, false, swift.Headers{"Range": rng})
	if err != nil {
		cancel()
		return nil, s.errorf(ctx, "open", key, err)
	}
	return s.body(f, cancel, key), nil
}

// Stat returns the object's size (a large object's total), time and
// metadata; ErrNotFound also when the container does not exist yet.
func (s *Swift) Stat(ctx context.Context, key string) (Object, error) {
	name, err := s.name(key)
	if err != nil {
		return Object{}, fmt.Errorf("stat: %w", err)
	}
	if err := s.auth(ctx); err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", key, err)
	}
	info, h, err := s.c.Object(ctx, s.container, name)
	if err != nil {
		return Object{}, s.errorf(ctx, "stat", key, err)
	}
	return Object{Key: key, Size: info.Bytes, Modified: info.LastModified, Changed: info.LastModified, Metadata: readSwiftMetadata(h)}, nil
}

// List lists the container under prefix, in Swift's (lexical) order,
// leaving out segments. A listing shows a large object's manifest with
// zero bytes, so zero-byte entries are asked their size. A container that
// does not exist lists nothing: the first upload creates it.
func (s *Swift) List(ctx context.Context, prefix string, fn func(Object) error) error {
	if err := s.auth(ctx); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	opts := &swift.ObjectsOpts{Prefix: s.prefix + prefix, Limit: 1000}
	for {
		objs, err := s.c.Objects(ctx, s.container, opts)
		if errors.Is(err, swift.ContainerNotFound) {
			// Not created yet (the first upload does), as a local
			// store's missing directory lists nothing.
			return nil
		}
		if err != nil {
			return s.errorf(ctx, "list", prefix, err)
		}
		if len(objs) == 0 {
			return nil
		}
		for _, o := range objs {
			key := strings.TrimPrefix(o.Name, s.prefix)
			if o.SubDir != "" || segmentKey(key) {
				continue
			}
			size := o.Bytes
			if size == 0 {
				info, _, err := s.c.Object(ctx, s.container, o.Name)
				if errors.Is(err, swift.ObjectNotFound) {
					continue // deleted since the listing
				}
				if err != nil {
					return s.errorf(ctx, "list", prefix, err)
				}
				size = info.Bytes
			}
			if err := fn(Object{Key: key, Size: size, Modified: o.LastModified, Changed: o.LastModified}); err != nil {
				return err
			}
		}
		opts.Marker = objs[len(objs)-1].Name
	}
}

// Delete removes the object and, for a large object, its segments: the
// manifest first, so the object disappears at once. Only segments in the
// object's own segment folders go (ownSegments); a Static Large Object
// (not written by hoard or rohmu) loses its manifest alone, since its
// segment list may name any object: both are told to OnSkip. A missing
// key succeeds.
func (s *Swift) Delete(ctx context.Context, key string) error {
	name, err := s.name(key)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := s.auth(ctx); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	_, h, err := s.c.Object(ctx, s.container, name)
	if errors.Is(err, swift.ObjectNotFound) {
		return nil
	}
	if err != nil {
		return s.errorf(ctx, "delete", key, err)
	}
	// A plain DELETE of a Static Large Object's manifest leaves its
	// segments (multipart-manifest=delete would delete every object its
	// list names, in any container).
	if err := s.c.ObjectDelete(ctx, s.container, name); err != nil && !errors.Is(err, swift.ObjectNotFound) {
		return s.errorf(ctx, "delete", key, err)
	}
	if h["X-Static-Large-Object"] != "" {
		if s.OnSkip != nil {
			s.OnSkip(key, "it is a Static Large Object, which neither hoard nor PGHoard writes: its manifest was deleted alone, "+
				"not the objects its segment list names (they may be other objects; delete unused segments by hand)")
		}
		return nil
	}
	if m := h["X-Object-Manifest"]; m != "" {
		s.deleteSegments(ctx, key, name, m, "deleted")
	}
	return nil
}

// Close releases idle connections.
func (s *Swift) Close() error {
	s.c.UnAuthenticate()
	return nil
}
