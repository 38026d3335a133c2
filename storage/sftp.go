package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

var _ Store = (*SFTP)(nil)

// SFTP is PGHoard's sftp storage: the local store's layout on an SSH
// server. The object for key K is the file <root>/K and its metadata the
// sidecar <root>/K.metadata (a JSON object of strings plus "_hash", the
// SHA-256 of the stored bytes); a file without a sidecar is invisible, so
// the sidecar is stored last. <root> is directory joined with prefix,
// relative to the login directory unless absolute.
//
// Files are written to a temp name starting with a dot (which listings
// skip, as PGHoard's do), fsynced when the server has fsync@openssh.com,
// and renamed: posix-rename@openssh.com replaces an object atomically
// (without it, see replace). Create links the data file into place
// instead (placeNew), as a rename may replace.
// SFTP cannot fsync a directory, so a rename's durability is the server
// filesystem's.
//
// A server that stops answering fails the operations waiting on it: the
// connection is closed once an SSH keepalive has gone unanswered for
// StallTimeout with no byte at all arriving meanwhile (see watch), and an
// operation still running stallGrace after its context ended closes it too.
type SFTP struct {
	addr   string
	config *ssh.ClientConfig
	root   string
	dir    string // object_storage.directory ("." for the user's home)
	// stall is StallTimeout when the store was opened.
	stall time.Duration
	// hook runs before each rename of Put's replace; tests make it fail,
	// or look at the files then.
	hook func(oldname, newname string) error

	mu   sync.Mutex
	sess *sftpSession
}

// sftpSession is one SSH connection and the SFTP session on it, shared by
// the store's operations until it is lost.
type sftpSession struct {
	conn *ssh.Client
	c    *sftp.Client
	nc   *progressConn
	// stalled is set when watch closed the session for want of progress.
	stalled   atomic.Bool
	done      chan struct{} // closed by close: ends watch
	closeOnce sync.Once
}

// close ends the session by closing its connection: every request in
// flight on it fails at once, and the SFTP client's goroutines end.
func (ss *sftpSession) close() error {
	var err error
	ss.closeOnce.Do(func() {
		close(ss.done)
		err = ss.conn.Close()
	})
	return err
}

// progressConn records when a byte last arrived from the server.
type progressConn struct {
	net.Conn
	last atomic.Int64 // UnixNano
}

func (c *progressConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// openSFTP checks c and returns an SFTP store. It does not connect: the
// first operation does, and checks the server's host key then.
func openSFTP(c Config) (*SFTP, error) {
	var auth []ssh.AuthMethod
	if c.PrivateKey != "" {
		pem, err := os.ReadFile(c.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("open sftp storage: private_key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("open sftp storage: private_key %s is encrypted: give an unencrypted key file (as PGHoard takes it)", c.PrivateKey)
		}
		if err != nil {
			return nil, fmt.Errorf("open sftp storage: private_key %s: %w", c.PrivateKey, err)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if c.Password != "" {
		pw := c.Password
		auth = append(auth, ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i := range answers {
				answers[i] = pw
			}
			return answers, nil
		}))
	}
	port := c.Port
	if port == 0 {
		port = 22
	}
	addr := net.JoinHostPort(c.Server, strconv.Itoa(port))
	check, err := hostKeyCheck(c, addr)
	if err != nil {
		return nil, err
	}
	root := path.Join(c.Directory, strings.TrimSuffix(c.Prefix, "/"))
	if root == "" {
		root = "."
	}
	dir := c.Directory
	if dir == "" {
		dir = "."
	}
	return &SFTP{
		addr:  addr,
		root:  root,
		dir:   dir,
		stall: StallTimeout,
		config: &ssh.ClientConfig{
			User:            c.Username,
			Auth:            auth,
			HostKeyCallback: check,
			Timeout:         30 * time.Second,
		},
	}, nil
}

// hostKeyCheck returns the host key callback c asks for: a pinned
// fingerprint, a known_hosts file (by default ~/.ssh/known_hosts), or, only
// when insecure_ignore_host_key says so, none.
func hostKeyCheck(c Config, addr string) (ssh.HostKeyCallback, error) {
	switch {
	case c.InsecureIgnoreHostKey: // Check refuses it with the other two
		return ssh.InsecureIgnoreHostKey(), nil
	case c.HostKeyFingerprint != "":
		want := c.HostKeyFingerprint
		return func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if got := ssh.FingerprintSHA256(key); got != want {
				return &permanentError{
					msg: fmt.Sprintf("sftp server %s presents host key %s %s, not host_key_fingerprint %s: check the server (or the fingerprint)", addr, key.Type(), got, want),
					err: errHostKey,
				}
			}
			return nil
		}, nil
	}
	file := c.KnownHostsFile
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("open sftp storage: no known_hosts_file and no home directory: %w", err)
		}
		file = filepath.Join(home, ".ssh", "known_hosts")
	}
	if _, err := os.Stat(file); err != nil {
		return nil, fmt.Errorf("open sftp storage: known_hosts file: %w: add the server's key (ssh-keyscan -p PORT HOST >> FILE), "+
			"or set known_hosts_file or host_key_fingerprint", err)
	}
	kh, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("open sftp storage: known_hosts file %s: %w", file, err)
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := kh(host, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			if len(ke.Want) == 0 {
				return &permanentError{
					msg: fmt.Sprintf("sftp server %s is not in %s (its host key is %s %s): add it if that is the server's key, or set host_key_fingerprint",
						addr, file, key.Type(), ssh.FingerprintSHA256(key)),
					err: errHostKey,
				}
			}
			return &hostKeyMismatch{addr: addr, file: file, got: key, want: ke.Want}
		}
		return err
	}, nil
}

// errHostKey is the cause of a refused host key.
var errHostKey = errors.New("host key refused")

// hostKeyMismatch is a host key that known_hosts has other keys for: a
// changed key, or only a key of another type, which connect asks for again.
type hostKeyMismatch struct {
	addr, file string
	got        ssh.PublicKey
	want       []knownhosts.KnownKey
}

func (e *hostKeyMismatch) Error() string {
	return fmt.Sprintf("sftp server %s presents host key %s %s, which differs from the one in %s: the host key changed or someone is in between",
		e.addr, e.got.Type(), ssh.FingerprintSHA256(e.got), e.file)
}

func (e *hostKeyMismatch) Unwrap() []error { return []error{ErrPermanent, errHostKey} }

// client returns the SFTP session, connecting when there is none. The
// dial and the SSH handshake end with ctx.
func (s *SFTP) client(ctx context.Context) (*sftpSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess != nil {
		return s.sess, nil
	}
	conn, nc, err := s.dial(ctx, s.config)
	var mm *hostKeyMismatch
	if errors.As(err, &mm) && !sameKeyType(mm) {
		// known_hosts has the server under another key type than the
		// one negotiated: ask for the known types.
		cfg := *s.config
		cfg.HostKeyAlgorithms = keyAlgorithms(mm.want)
		conn, nc, err = s.dial(ctx, &cfg)
	}
	if err != nil {
		var pe *permanentError
		if errors.As(err, &pe) || errors.As(err, &mm) {
			return nil, err
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, &permanentError{msg: fmt.Sprintf("sftp server %s refused user %s: check username, password or private_key", s.addr, s.config.User), err: err}
		}
		return nil, fmt.Errorf("connect to sftp server %s: %w", s.addr, err)
	}
	ss := &sftpSession{conn: conn, nc: nc, done: make(chan struct{})}
	// Starting the session waits for the server's answer: watched too.
	go s.watch(ss)
	c, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true))
	if err != nil {
		_ = ss.close()
		if ss.stalled.Load() {
			err = s.stallError(err)
		}
		return nil, fmt.Errorf("start sftp on %s: %w", s.addr, err)
	}
	ss.c = c
	s.sess = ss
	return ss, nil
}

// dial connects and runs the SSH handshake, both ended by ctx and by the
// configuration's Timeout, or the stall timeout when it is shorter.
func (s *SFTP) dial(ctx context.Context, cfg *ssh.ClientConfig) (*ssh.Client, *progressConn, error) {
	addr := s.addr
	timeout := min(cfg.Timeout, s.stall)
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	nc := &progressConn{Conn: raw}
	nc.last.Store(time.Now().UnixNano())
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	_ = raw.SetDeadline(time.Now().Add(timeout))
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		_ = raw.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, nil, fmt.Errorf("%w (%v)", cerr, err)
		}
		return nil, nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nc, nil
}

// keepaliveRequest is OpenSSH's keepalive global request: a server
// answers it (with a refusal, as any request it does not know) as long as
// it is alive, whatever its channels are doing.
const keepaliveRequest = "keepalive@openssh.com"

// watch closes the session ss when its server stops answering. Every
// quarter of the stall timeout it sends a keepalive, unless the last one
// is still unanswered; once one has waited the stall timeout with no byte
// at all from the server meanwhile, the connection is stalled: watch
// closes it, and the operations on it fail (see stallError). Bytes that
// keep coming (a long transfer whose replies queue behind data) are
// progress. A session that is idle is answered at once.
func (s *SFTP) watch(ss *sftpSession) {
	timeout := s.stall
	tick := time.NewTicker(max(timeout/4, time.Millisecond))
	defer tick.Stop()
	var answered chan struct{}
	var sent time.Time
	for {
		select {
		case <-ss.done:
			return
		case <-tick.C:
		}
		if answered != nil {
			select {
			case <-answered:
				answered = nil
			default:
			}
		}
		now := time.Now()
		if answered == nil {
			answered, sent = make(chan struct{}), now
			go func(done chan struct{}) {
				_, _, _ = ss.conn.SendRequest(keepaliveRequest, true, nil)
				close(done)
			}(answered)
			continue
		}
		last := time.Unix(0, ss.nc.last.Load())
		if now.Sub(sent) >= timeout && now.Sub(last) >= timeout {
			ss.stalled.Store(true)
			s.drop(ss)
			return
		}
	}
}

// stallError says that err came from a session watch closed.
func (s *SFTP) stallError(err error) error {
	return fmt.Errorf("sftp server %s answered nothing for %s, connection closed: %w", s.addr, s.stall, err)
}

func sameKeyType(mm *hostKeyMismatch) bool {
	for _, k := range mm.want {
		if k.Key.Type() == mm.got.Type() {
			return true
		}
	}
	return false
}

// keyAlgorithms returns the host key algorithms that produce keys of the
// known keys' types.
func keyAlgorithms(known []knownhosts.KnownKey) []string {
	var algs []string
	for _, k := range known {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algs = append(algs, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algs = append(algs, t)
		}
	}
	return algs
}

// broken drops the session after an error that says the connection is
// gone, so the next operation connects again. Any other error (the
// server's answer, ErrExist, a failing source, a cancelled ctx) leaves it:
// the session is shared, and closing it would fail every operation other
// goroutines have in flight on it.
func (s *SFTP) broken(ss *sftpSession, err error) {
	if err == nil || !connectionLost(err) {
		return
	}
	s.drop(ss)
}

// drop closes the session ss and forgets it if it is still the store's:
// every request in flight on it fails at once.
func (s *SFTP) drop(ss *sftpSession) {
	s.mu.Lock()
	if s.sess == ss {
		s.sess = nil
	}
	s.mu.Unlock()
	_ = ss.close()
}

// connectionLost reports whether err is the SFTP session's own failure: a
// lost or closed connection (pkg/sftp fails every request, in flight or
// later, with ErrSSHFxConnectionLost once its connection is gone), or a
// network error.
func connectionLost(err error) bool {
	var ne net.Error
	return errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, sftp.ErrSSHFxNoConnection) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// path checks key and returns its file path on the server; the rules are
// the local store's.
func (s *SFTP) path(key string) (string, error) {
	if err := checkFileKey(key, "a file"); err != nil {
		return "", err
	}
	return path.Join(s.root, key), nil
}

// notFound passes on err, the error of reading a key's sidecar, unless
// it says the file does not exist and the storage directory is missing or
// empty, which is what a volume not mounted on the server looks like: that
// is an error, not a missing object. Without this check wal-fetch would
// tell PostgreSQL that the archive ends here, and recovery would stop and
// promote short of the archived WAL (as Local's notFound).
func (s *SFTP) notFound(c *sftp.Client, err error) error {
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ents, derr := c.ReadDir(s.dir)
	switch {
	case errors.Is(derr, fs.ErrNotExist):
		return &permanentError{
			msg: fmt.Sprintf("sftp storage directory %s does not exist on %s: is its volume mounted? (check object_storage.directory)", s.dir, s.addr),
			err: derr,
		}
	case derr == nil && len(ents) == 0:
		return &permanentError{
			msg: fmt.Sprintf("sftp storage directory %s on %s is empty: is its volume mounted? (check object_storage.directory)", s.dir, s.addr),
			err: errors.New("no entries"),
		}
	}
	return err
}

// errorf wraps an SFTP error: a missing file is ErrNotFound, a refusal
// ErrPermanent.
func (s *SFTP) errorf(op, key string, err error) error {
	var pe *permanentError
	var mm *hostKeyMismatch
	switch {
	case errors.As(err, &pe) || errors.As(err, &mm):
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		err = &permanentError{msg: fmt.Sprintf("permission denied on sftp server %s: check the user's rights on %s", s.addr, s.root), err: err}
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// do runs f with a session, dropping the session when f finds its
// connection lost. SFTP requests know no context: an upload stops at its
// next read of the source once ctx ends, but a request to a server that
// stopped answering would wait until watch gives up on it, so the session
// is closed when f is still running stallGrace after ctx ended (see
// guard).
func (s *SFTP) do(ctx context.Context, op, key string, f func(c *sftp.Client) error) error {
	return s.run(ctx, op, key, func(ss *sftpSession) error { return f(ss.c) })
}

// run is do with the session itself, for an operation that returns an
// open file.
func (s *SFTP) run(ctx context.Context, op, key string, f func(ss *sftpSession) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	ss, err := s.client(ctx)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	release := s.guard(ctx, ss)
	err = f(ss)
	release()
	s.broken(ss, err)
	switch {
	case err == nil:
		return nil
	case ss.stalled.Load():
		return fmt.Errorf("%s %s: %w", op, key, s.stallError(err))
	case ctx.Err() != nil && connectionLost(err):
		// guard closed the session under f.
		return fmt.Errorf("%s %s: %w (%v)", op, key, ctx.Err(), err)
	}
	return s.errorf(op, key, err)
}

// stallGrace is how long an operation may go on after its context ended
// before guard closes the session under it. Requests to a live server
// end well within it; closing a session also fails the other operations
// on it, which is only right when the server stopped answering them too.
var stallGrace = 10 * time.Second

// guard closes the session ss when ctx ends and the operation is still
// running stallGrace later. The returned func ends the guard.
func (s *SFTP) guard(ctx context.Context, ss *sftpSession) (release func()) {
	var mu sync.Mutex
	var timer *time.Timer
	done := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			timer = time.AfterFunc(stallGrace, func() { s.drop(ss) })
		}
	})
	return func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		done = true
		if timer != nil {
			timer.Stop()
		}
	}
}

// sftpReader is an opened object's file: reads held by a stalled server
// end once watch, or guard stallGrace after ctx ends, closes the session,
// and say so.
type sftpReader struct {
	io.Reader
	key     string // for errors (readError)
	f       *sftp.File
	s       *SFTP
	ss      *sftpSession
	release func()
}

func (r *sftpReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err != nil && err != io.EOF && r.ss.stalled.Load() {
		err = r.s.stallError(err)
	}
	return n, readError(err, r.key, "sftp server "+r.s.addr)
}

// WriteTo keeps the file's own WriteTo, which reads ahead with several
// requests in flight, for io.Copy.
func (r *sftpReader) WriteTo(w io.Writer) (int64, error) {
	n, err := io.Copy(w, r.Reader)
	if err != nil && r.ss.stalled.Load() {
		err = r.s.stallError(err)
	}
	if err != nil {
		// Not a ReadError: the error may be w's.
		err = fmt.Errorf("copy %s from sftp server %s: %w", r.key, r.s.addr, err)
	}
	return n, err
}

func (r *sftpReader) Close() error {
	r.release()
	return r.f.Close()
}

// Put writes the object to a temp file and renames it over the object,
// then does the same for the sidecar. The old object is never removed
// first: between the two renames (a crash there, or a failing second
// rename) the sidecar temp file, named for the new file (replaceName),
// completes the new object, and readers roll it forward (see replace.go).
// Each rename replaces atomically with posix-rename@openssh.com; on a
// server without it, a Put over an existing object works only where
// SFTP's own rename replaces (see replace), and otherwise fails with
// ErrNoAtomicReplace, leaving the object as it was.
func (s *SFTP) Put(ctx context.Context, key string, r io.Reader, md Metadata) error {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("put: %w", err)
	}
	return s.do(ctx, "put", key, func(c *sftp.Client) error {
		tmp, sidecarTmp, removeTemps, err := s.writeTemps(ctx, c, p, r, md)
		if err != nil {
			return err
		}
		// The sidecar temp that may complete the file being replaced, left
		// by a Put interrupted between its renames; it goes once this one
		// is done.
		var oldTmp string
		if fi, err := c.Lstat(p); err == nil {
			dir, base := path.Split(p)
			oldTmp = dir + replaceName(base, fi.Size(), fi.ModTime())
		}
		if err := s.replace(c, tmp, p); err != nil {
			// A rename whose answer was lost may have happened: then the
			// sidecar temp completes the new file, and stays.
			if _, serr := c.Lstat(tmp); serr == nil {
				removeTemps()
			}
			return err
		}
		if err := s.replace(c, sidecarTmp, p+sidecarSuffix); err != nil {
			return err
		}
		if oldTmp != "" && oldTmp != sidecarTmp {
			_ = c.Remove(oldTmp)
		}
		return nil
	})
}

// replace renames oldname to newname, replacing newname atomically with
// posix-rename@openssh.com. Without the extension there is only SFTP's own
// rename: servers that do it with rename(2) replace atomically too, while
// OpenSSH's (link(2) and unlink(2)) and the protocol's draft refuse a new
// name that exists. newname is never removed first, as a crash between
// the removal and the rename would leave the key without its object: a
// refused replace is ErrNoAtomicReplace, with the object left as it was.
// Tests can make it fail or stop (hook).
func (s *SFTP) replace(c *sftp.Client, oldname, newname string) error {
	if s.hook != nil {
		if err := s.hook(oldname, newname); err != nil {
			return err
		}
	}
	if _, ok := c.HasExtension("posix-rename@openssh.com"); ok {
		return c.PosixRename(oldname, newname)
	}
	err := c.Rename(oldname, newname)
	if err == nil {
		return nil
	}
	if _, oerr := c.Lstat(oldname); oerr == nil {
		if _, nerr := c.Lstat(newname); nerr == nil {
			return &permanentError{msg: fmt.Sprintf("replace %s: the server has no posix-rename@openssh.com and its rename "+
				"does not replace an existing file; hoard does not remove an object before its replacement is in place "+
				"(see docs/storage.md: use a server with posix-rename, as OpenSSH's since 4.9)", newname),
				err: errors.Join(ErrNoAtomicReplace, err)}
		}
	}
	return err
}

// writeTemps makes the object's directory and writes the data and the
// sidecar to temp files in it, the sidecar's under the replace name of the
// data file (writeReplaceTemp). On error
// it leaves neither. Otherwise removeTemps removes both (deferred by a
// caller that renames neither away).
func (s *SFTP) writeTemps(ctx context.Context, c *sftp.Client, p string, r io.Reader, md Metadata) (tmp, sidecarTmp string, removeTemps func(), err error) {
	dir, base := path.Split(p)
	if err := c.MkdirAll(dir); err != nil {
		return "", "", nil, err
	}
	tmp = dir + "." + base + ".tmp-" + randomSuffix()
	sum, size, err := writeRemote(ctx, c, tmp, r)
	if err != nil {
		return "", "", nil, err
	}
	sidecar, err := encodeSidecar(md, sum, size)
	var fi os.FileInfo
	if err == nil {
		fi, err = c.Lstat(tmp)
	}
	if err == nil {
		sidecarTmp, err = writeReplaceTemp(ctx, c, tmp, base, size, fi.ModTime(), sidecar)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = c.Remove(tmp)
		if sidecarTmp != "" {
			_ = c.Remove(sidecarTmp)
		}
		return "", "", nil, err
	}
	return tmp, sidecarTmp, func() {
		_ = c.Remove(tmp)
		_ = c.Remove(sidecarTmp)
	}, nil
}

// writeReplaceTemp writes sidecar, the sidecar of the data temp file tmp,
// of size bytes modified at mtime, that is to replace the object file
// base, under tmp's replace name, and returns that name. Another Put of
// the key in flight, or a sidecar temp an interrupted one left, may hold
// it (same size, same second): then tmp's modification time moves on a
// second until its name is free, as the local store's createReplaceTemp
// does (see replace.go). On error it leaves no sidecar temp.
func writeReplaceTemp(ctx context.Context, c *sftp.Client, tmp, base string, size int64, mtime time.Time, sidecar []byte) (string, error) {
	dir := path.Dir(tmp) + "/"
	vanished := 0
	for taken := 0; taken < maxReplaceNames; {
		name := dir + replaceName(base, size, mtime)
		_, _, err := writeRemote(ctx, c, name, bytes.NewReader(sidecar))
		if err == nil {
			return name, nil
		}
		if ctx.Err() != nil {
			return "", err
		}
		// SFTP v3 says only "failure" for an existing name.
		if _, serr := c.Lstat(name); serr != nil {
			// Not there: the Put holding it renamed it away meanwhile
			// (with several Puts of the key in flight, again and again),
			// or a failure of its own; the same name again, a bounded
			// number of times.
			if vanished++; vanished >= maxReplaceNames {
				return "", err
			}
			continue
		}
		taken++
		mtime = mtime.Add(time.Second)
		if err := c.Chtimes(tmp, mtime, mtime); err != nil {
			return "", err
		}
		if err := syncRemote(c, tmp); err != nil {
			return "", err
		}
	}
	return "", errReplaceNamesTaken(base)
}

// syncRemote fsyncs the file name when the server can
// (fsync@openssh.com): a changed modification time must last.
func syncRemote(c *sftp.Client, name string) error {
	if !canSync(c) {
		return nil
	}
	f, err := c.OpenFile(name, os.O_WRONLY)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// canSync tells whether the server fsyncs files (fsync@openssh.com).
func canSync(c *sftp.Client) bool {
	_, ok := c.HasExtension("fsync@openssh.com")
	return ok
}

// writeRemote copies r to a new file name and returns the SHA-256 of the
// bytes. The file is fsynced when the server can (fsync@openssh.com). On
// error, including a cancelled ctx, the file is removed.
func writeRemote(ctx context.Context, c *sftp.Client, name string, r io.Reader) (sum []byte, size int64, err error) {
	f, err := c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = c.Remove(name)
		}
	}()
	h := sha256.New()
	n, err := io.Copy(f, io.TeeReader(ctxReader{ctx: ctx, r: r}, h))
	if err != nil {
		return nil, 0, err
	}
	if canSync(c) {
		if err := f.Sync(); err != nil {
			return nil, 0, err
		}
	}
	if err := f.Close(); err != nil {
		return nil, 0, err
	}
	return h.Sum(nil), n, nil
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readSidecar reads and decodes the object's sidecar as parseSidecar
// does for the local store and a sidecar temp.
func (s *SFTP) readSidecar(c *sftp.Client, p string) (Metadata, error) {
	data, err := readAllRemote(c, p+sidecarSuffix, maxSidecar)
	if err != nil {
		return nil, err
	}
	md, err := parseSidecar(data)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w: %w", path.Base(p)+sidecarSuffix, ErrBadMetadata, err)
	}
	return md, nil
}

// Create stores the object only if the key has none: the data file is
// put in place with link (placeNew), which fails on an existing name, so
// of concurrent Creates exactly one places it and only that one goes on
// to rename the sidecar into place. A data file found without a sidecar
// is another writer between its two steps, or one that died there:
// Create refuses it with an error naming it, as the local store does for
// other bytes.
func (s *SFTP) Create(ctx context.Context, key string, r io.Reader, md Metadata) error {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	return s.do(ctx, "create", key, func(c *sftp.Client) error {
		if _, err := c.Stat(p + sidecarSuffix); err == nil {
			return fmt.Errorf("%w", ErrExist)
		}
		tmp, sidecarTmp, removeTemps, err := s.writeTemps(ctx, c, p, r, md)
		if err != nil {
			return err
		}
		defer removeTemps()
		if err := placeNew(c, tmp, p); err != nil {
			// Another writer's data is there; its sidecar follows at once.
			for deadline := time.Now().Add(incompleteWait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if _, serr := c.Stat(p + sidecarSuffix); serr == nil {
					return fmt.Errorf("%w", ErrExist)
				}
			}
			if _, perr := c.Stat(p); perr == nil {
				return &permanentError{msg: fmt.Sprintf("%s exists without its metadata sidecar: another writer is storing it, or one stopped "+
					"between storing an object and its metadata; if no hoard or PGHoard process is writing it, move it away", p), err: err}
			}
			return err
		}
		if err := c.Rename(sidecarTmp, p+sidecarSuffix); err != nil {
			if _, serr := c.Stat(p + sidecarSuffix); serr == nil {
				return fmt.Errorf("%w", ErrExist)
			}
			return err
		}
		return nil
	})
}

// placeNew gives the temp file tmp the name name only if no file has it.
// With hardlink@openssh.com (OpenSSH's server since 5.7, pkg/sftp's) it
// links tmp as name: link(2) fails on an existing name, atomically, on
// every server. SFTP's own rename (SSH_FXP_RENAME) is not enough: OpenSSH's
// server does it with link(2) and unlink(2) and refuses an existing name,
// as the protocol's draft says, but servers that do it with rename(2)
// (pkg/sftp's, paramiko's default) replace it, and there concurrent
// Creates of one key all succeeded, each replacing the one before, the
// object left with one writer's bytes and another's sidecar. Without the
// extension, or where the link fails and name is still free (a file
// system without hard links, where OpenSSH's rename itself falls back to
// a check and rename(2)), the rename is used: on a server whose rename
// replaces, Create is then as racy as the server. tmp keeps its name
// after a link; the caller removes it.
func placeNew(c *sftp.Client, tmp, name string) error {
	if _, ok := c.HasExtension("hardlink@openssh.com"); !ok {
		return c.Rename(tmp, name)
	}
	err := c.Link(tmp, name)
	if err == nil {
		return nil
	}
	if _, serr := c.Lstat(name); !errors.Is(serr, fs.ErrNotExist) {
		return err // name is taken (or cannot be looked at): the link's error stands
	}
	if _, serr := c.Lstat(tmp); serr != nil {
		return err // tmp is gone: nothing to rename
	}
	return c.Rename(tmp, name)
}

// Open returns the object's file and metadata: its sidecar's, or that of
// the sidecar temp file that completes an interrupted replace (see
// replace.go). SFTP reports no change
// time, so the Object's Changed is zero: unencrypted_objects_before admits
// nothing from an SFTP store.
func (s *SFTP) Open(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, Object{}, fmt.Errorf("open: %w", err)
	}
	var f *sftp.File
	var on *sftpSession
	var md Metadata
	var o Object
	err = s.run(ctx, "open", key, func(ss *sftpSession) error {
		if md, err = s.readSidecar(ss.c, p); err != nil {
			return s.notFound(ss.c, err)
		}
		on = ss
		if f, err = ss.c.Open(p); err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return err
		}
		if cmd, ok := s.completedSidecar(ss.c, p, fi); ok {
			md = cmd
		}
		o.Size, o.Modified = fi.Size(), fi.ModTime()
		return nil
	})
	if err != nil {
		return nil, Object{}, err
	}
	o.Key, o.Metadata = key, md
	return &sftpReader{Reader: f, key: key, f: f, s: s, ss: on, release: s.guard(ctx, on)}, o, nil
}

// OpenRange returns a section of the object's file.
func (s *SFTP) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	var f *sftp.File
	var on *sftpSession
	err = s.run(ctx, "open", key, func(ss *sftpSession) error {
		on = ss
		if _, err := ss.c.Stat(p + sidecarSuffix); err != nil {
			return s.notFound(ss.c, err)
		}
		if f, err = ss.c.Open(p); err != nil {
			return err
		}
		if length < 0 {
			_, err = f.Seek(offset, io.SeekStart)
			return err
		}
		return nil
	})
	if err != nil {
		if f != nil {
			_ = f.Close()
		}
		return nil, err
	}
	r := &sftpReader{Reader: f, key: key, f: f, s: s, ss: on, release: s.guard(ctx, on)}
	if length >= 0 {
		r.Reader = io.NewSectionReader(f, offset, length)
	}
	return r, nil
}

// Stat returns the file's size and time and the metadata Open would.
func (s *SFTP) Stat(ctx context.Context, key string) (Object, error) {
	p, err := s.path(key)
	if err != nil {
		return Object{}, fmt.Errorf("stat: %w", err)
	}
	var o Object
	err = s.do(ctx, "stat", key, func(c *sftp.Client) error {
		md, err := s.readSidecar(c, p)
		if err != nil {
			return err
		}
		fi, err := c.Stat(p)
		if err != nil {
			return err
		}
		if cmd, ok := s.completedSidecar(c, p, fi); ok {
			md = cmd
		}
		o = Object{Key: key, Size: fi.Size(), Modified: fi.ModTime(), Metadata: md}
		return nil
	})
	return o, err
}

// List walks the directories under prefix, reading each once; a file
// counts when its directory also has its sidecar, as in PGHoard. On the
// way it removes temp files not written for StaleTempAge, as the local
// store does: what a killed Put or Create left behind, never an object,
// nor the sidecar temp that completes an interrupted replace.
func (s *SFTP) List(ctx context.Context, prefix string, fn func(Object) error) error {
	start := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = prefix[:i]
	}
	now := time.Now()
	var objs []Object
	err := s.do(ctx, "list", prefix, func(c *sftp.Client) error {
		var walk func(dir string) error
		walk = func(dir string) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			entries, err := c.ReadDir(path.Join(s.root, dir))
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			names := make(map[string]os.FileInfo, len(entries))
			for _, e := range entries {
				names[e.Name()] = e
			}
			entry := func(name string) (os.FileInfo, error) {
				if fi := names[name]; fi != nil {
					return fi, nil
				}
				return nil, fs.ErrNotExist
			}
			for _, e := range entries {
				if hidden(e.Name()) {
					if tempFile(e.Name()) && e.Mode().IsRegular() && now.Sub(e.ModTime()) > StaleTempAge && !completes(e.Name(), entry) {
						// Best effort: another lister may have removed it.
						_ = c.Remove(path.Join(s.root, dir, e.Name()))
					}
					continue
				}
				key := e.Name()
				if dir != "" {
					key = dir + "/" + key
				}
				switch {
				case e.IsDir():
					if strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
						if err := walk(key); err != nil {
							return err
						}
					}
				case e.Mode().IsRegular() && strings.HasPrefix(key, prefix) && names[e.Name()+sidecarSuffix] != nil:
					objs = append(objs, Object{Key: key, Size: e.Size(), Modified: e.ModTime()})
				}
			}
			return nil
		}
		return walk(start)
	})
	if err != nil {
		return err
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	for _, o := range objs {
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the sidecar first (the object disappears at once), then
// the file. Missing files are fine.
func (s *SFTP) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return s.do(ctx, "delete", key, func(c *sftp.Client) error {
		for _, name := range []string{p + sidecarSuffix, p} {
			if err := c.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}

// Close ends the SSH session.
func (s *SFTP) Close() error {
	s.mu.Lock()
	ss := s.sess
	s.sess = nil
	s.mu.Unlock()
	if ss == nil {
		return nil
	}
	return ss.close()
}
