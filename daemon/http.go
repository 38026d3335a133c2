package daemon

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/metrics"
)

// Errors RequestBackup returns (wrapped) to get the matching HTTP status.
var (
	// ErrUnknownSite means no site of that name is configured (404).
	ErrUnknownSite = errors.New("unknown site")
	// ErrBackupPending means a basebackup request of the site already
	// waits for the backup loop (409). A request made while a backup runs,
	// with none waiting, is taken after it: running alone is no conflict.
	ErrBackupPending = errors.New("a basebackup request already waits: the site takes it as soon as it can, after the backup running if any (hoard list shows the backup); to request another, ask again once it has started")
	// ErrMaintenance means the maintenance mode file exists: no
	// basebackup starts until it is removed (503).
	ErrMaintenance = errors.New("maintenance mode: no basebackups start while the maintenance mode file exists")
	// ErrSiteStopping means the site's backup loop has ended (the daemon
	// is shutting down, or a reload is restarting the site): nothing
	// would take the backup, so it is refused rather than queued (503).
	ErrSiteStopping = errors.New("the site is stopping (shutdown or reload): no backup loop takes requests; request it again once the daemon runs it")
	// ErrSiteStopped means the site is stopped by an error and waits to
	// be started again (503): /status has the error.
	ErrSiteStopped = errors.New("the site is stopped by an error (see its stopped in /status and the daemon's log): no backup loop takes requests; fix the error and reload the daemon (SIGHUP), then request it again")
	// ErrUnknownRequest means the daemon knows no basebackup request of
	// that id for the site: it was never made there, it is older than
	// the last maxRequests, or the daemon restarted since (404).
	ErrUnknownRequest = errors.New("the daemon knows no such basebackup request (it keeps the last 256 since it started)")
	// ErrOtherDestination means a basebackup request came from a
	// configuration whose site of that name stores elsewhere than this
	// daemon's (421): another configuration's daemon answers on its
	// http_address:http_port.
	ErrOtherDestination = errors.New("this daemon stores the site elsewhere (another storage, prefix or site name) " +
		"than the configuration asking: it runs another configuration; give each configuration its own http_port")
)

// destinationDigest stands for a Site.Destination in a basebackup request
// (RequestBackup): enough to tell two apart, without sending the storage's
// location over HTTP.
func destinationDigest(dest string) string {
	sum := sha256.Sum256([]byte(dest))
	return hex.EncodeToString(sum[:16])
}

// HTTP server limits. A monitoring endpoint answers in milliseconds; these
// only keep slow or idle clients from holding connections for long.
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 60 * time.Second
	httpIdleTimeout       = 120 * time.Second
	httpMaxHeaderBytes    = 64 << 10
	httpShutdownTimeout   = 5 * time.Second
)

// authRealm is the Basic auth realm ("pghoard" in PGHoard).
const authRealm = "hoard"

// HTTPOptions configures ServeHTTP. Nil functions turn their endpoint off
// (501), except Healthy: without it /healthz always answers "ok".
type HTTPOptions struct {
	Address string // http_address: "" listens on all IPv4 addresses (as PGHoard), "::" on all IPv4 and IPv6
	Port    int    // http_port; 0 picks a free port (tests)

	// Username turns on HTTP Basic auth for every endpoint but /healthz.
	Username, Password string

	// TLSCertFile and TLSKeyFile (PEM) turn on HTTPS when both are set.
	TLSCertFile, TLSKeyFile string

	Status  func() any        // GET /status: the value is sent as indented JSON
	Metrics *metrics.Registry // GET /metrics
	// RequestBackup is PUT|POST /<site>/archive/basebackup and POST
	// /<site>/basebackup: it queues a backup and returns the request's id,
	// which the 201 answer names in its Location header
	// (/<site>/basebackup/<id>).
	RequestBackup func(site string) (id string, err error)
	// BackupRequest is GET /<site>/basebackup/<id>: what became of a
	// request, as JSON (RequestStatus).
	BackupRequest func(site, id string) (RequestStatus, error)
	// BackupStored is POST /<site>/backup-stored: a backup was stored in
	// the site (hoard basebackup --local tells the daemon), so the daemon
	// lists the site's backups now (at most every relistMinInterval).
	BackupStored func(site string) error
	// Destination returns the Site.Destination of site ("" for none): a
	// basebackup request whose configuration stores the site elsewhere
	// is refused (421), as it comes from another configuration.
	Destination func(site string) string
	Healthy     func() error // GET /healthz: nil is healthy

	Logger zerolog.Logger

	// Listening, when set, is called with the bound address before serving
	// starts, so a caller that asked for port 0 learns the port.
	Listening func(addr net.Addr)
}

// ServeHTTP serves the daemon's HTTP API until ctx is done, then shuts down
// gracefully, giving requests in flight 5 s. An error binding the address or
// loading the TLS key pair is returned at once.
func ServeHTTP(ctx context.Context, o HTTPOptions) error {
	log := o.Logger.With().Str("component", "http").Logger()
	srv := &http.Server{
		Handler:           newHTTPHandler(o, log),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          stdlog.New(httpErrorLog{log}, "", 0),
	}
	useTLS := o.TLSCertFile != "" || o.TLSKeyFile != ""
	if useTLS {
		if o.TLSCertFile == "" || o.TLSKeyFile == "" {
			return errors.New("https needs both a certificate and a key file")
		}
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("load tls key pair %s, %s: %w", o.TLSCertFile, o.TLSKeyFile, err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	if ctx.Err() != nil {
		return nil // stopped before it started, as after a shutdown
	}
	ln, err := listenHTTP(ctx, o.Address, o.Port)
	if err != nil {
		return err
	}
	log.Info().Str("addr", ln.Addr().String()).Bool("tls", useTLS).Bool("auth", o.Username != "").
		Msg("http server listening")
	if o.Listening != nil {
		o.Listening(ln.Addr())
	}

	errc := make(chan error, 1)
	go func() {
		if useTLS {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		// Requests still running after the deadline are cut off.
		_ = srv.Close()
		err = fmt.Errorf("shut down http server: %w", err)
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("serve http on %s: %w", ln.Addr(), serr)
	}
	log.Info().Msg("http server stopped")
	return err
}

// listenHTTP binds address:port with PGHoard's meaning of the address, and
// turns the usual bind failures into messages naming the config keys.
func listenHTTP(ctx context.Context, address string, port int) (net.Listener, error) {
	network, host, shown := "tcp", address, address
	if address == "" {
		// PGHoard binds "" with an AF_INET socket: every IPv4 address.
		network, host, shown = "tcp4", "0.0.0.0", "0.0.0.0"
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, net.JoinHostPort(host, strconv.Itoa(port)))
	switch {
	case err == nil:
		return ln, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("http_port %d on %s is in use: stop the other process or change http_port", port, shown)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("http_address %s is not an address of this host: set http_address to one of its addresses, "+
			"127.0.0.1 (the default), \"\" for every IPv4 address or \"::\" for every address: %w", shown, err)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("http_port %d on %s needs privileges: use a port above 1023", port, shown)
	default:
		return nil, fmt.Errorf("listen on http_address %q http_port %d: %w", address, port, err)
	}
}

// newHTTPHandler returns the routes behind auth and request logging.
func newHTTPHandler(o HTTPOptions, log zerolog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if o.Healthy != nil {
			if err := o.Healthy(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		if o.Status == nil {
			http.Error(w, "status is not available", http.StatusNotImplemented)
			return
		}
		b, err := json.MarshalIndent(o.Status(), "", "  ")
		if err != nil {
			log.Error().Err(err).Msg("encode status")
			http.Error(w, "encode status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(b, '\n'))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if o.Metrics == nil {
			http.Error(w, "metrics are not enabled", http.StatusNotImplemented)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		bw := bufio.NewWriterSize(w, 32<<10)
		if err := o.Metrics.WritePrometheus(bw); err == nil {
			_ = bw.Flush()
		}
	})
	backup := func(w http.ResponseWriter, r *http.Request) {
		site := r.PathValue("site")
		if o.RequestBackup == nil {
			http.Error(w, "basebackup requests are not available", http.StatusNotImplemented)
			return
		}
		// A request names its configuration's destination for the site
		// (RequestBackup): one from another configuration whose daemon is
		// not this one (same address and port, same site name) must not
		// make this daemon back up its own cluster.
		if misdirected(w, r, o, site) {
			return
		}
		id, err := o.RequestBackup(site)
		switch {
		case err == nil:
			log.Info().Str(logSite, site).Str("request", id).Msg("basebackup requested over http")
			// Older clients look at the status code alone.
			w.Header().Set("Location", "/"+site+"/basebackup/"+id)
			writeText(w, http.StatusCreated, "basebackup requested: request "+id+"\n")
		case errors.Is(err, ErrUnknownSite):
			http.Error(w, err.Error(), http.StatusNotFound)
		case errors.Is(err, ErrBackupPending):
			http.Error(w, err.Error(), http.StatusConflict)
		case errors.Is(err, ErrMaintenance), errors.Is(err, ErrSiteStopping), errors.Is(err, ErrSiteStopped):
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			log.Error().Err(err).Str(logSite, site).Msg("basebackup request")
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}
	mux.HandleFunc("POST /{site}/backup-stored", func(w http.ResponseWriter, r *http.Request) {
		site := r.PathValue("site")
		if o.BackupStored == nil {
			http.Error(w, "backup notes are not available", http.StatusNotImplemented)
			return
		}
		// A note from another configuration (NoteBackupStored) is not
		// about this daemon's site: taking it would tell that command
		// that a daemon streams its WAL.
		if misdirected(w, r, o, site) {
			return
		}
		switch err := o.BackupStored(site); {
		case err == nil:
			writeText(w, http.StatusAccepted, "the daemon lists the site's backups now, or 10 s after its last listing at the soonest\n")
		case errors.Is(err, ErrUnknownSite):
			http.Error(w, err.Error(), http.StatusNotFound)
		case errors.Is(err, ErrMaintenance):
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /{site}/basebackup/{id}", func(w http.ResponseWriter, r *http.Request) {
		if o.BackupRequest == nil {
			http.Error(w, "basebackup requests are not available", http.StatusNotImplemented)
			return
		}
		st, err := o.BackupRequest(r.PathValue("site"), r.PathValue("id"))
		switch {
		case err == nil:
			b, _ := json.Marshal(st) // strings only: cannot fail
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(append(b, '\n'))
		case errors.Is(err, ErrUnknownRequest):
			http.Error(w, err.Error(), http.StatusNotFound)
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("PUT /{site}/archive/basebackup", backup)
	mux.HandleFunc("POST /{site}/archive/basebackup", backup)
	mux.HandleFunc("POST /{site}/basebackup", backup)

	var h http.Handler = mux
	if o.Username != "" {
		h = basicAuth(h, o.Username, o.Password)
	}
	return logRequests(h, log)
}

// misdirected answers 421 (ErrOtherDestination) and returns true when r
// names a destination (?destination=, destinationDigest) for site that is
// not where this daemon stores site: r comes from another configuration.
// A request naming none (curl, an older hoard) or a site this daemon does
// not run passes.
func misdirected(w http.ResponseWriter, r *http.Request, o HTTPOptions, site string) bool {
	want := r.URL.Query().Get("destination")
	if want == "" || o.Destination == nil {
		return false
	}
	if have := o.Destination(site); have == "" || destinationDigest(have) == want {
		return false
	}
	http.Error(w, fmt.Sprintf("site %s: %v", site, ErrOtherDestination), http.StatusMisdirectedRequest)
	return true
}

// writeText writes a plain-text response.
func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// basicAuth requires the credentials on every path but /healthz, so liveness
// probes need no secret. Both sides are hashed before the constant-time
// compare so neither the length nor the content leaks through timing.
func basicAuth(next http.Handler, username, password string) http.Handler {
	wantUser := sha256.Sum256([]byte(username))
	wantPass := sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		user, pass, ok := r.BasicAuth()
		gotUser := sha256.Sum256([]byte(user))
		gotPass := sha256.Sum256([]byte(pass))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || userOK&passOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+authRealm+`", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status code a handler wrote, for the log.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// logRequests logs every request at Debug level.
func logRequests(next http.Handler, log zerolog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		log.Debug().Str("method", r.Method).Str("path", r.URL.Path).Int("status", rec.code).
			Str("remote", r.RemoteAddr).Int64("duration_ms", time.Since(start).Round(time.Millisecond).Milliseconds()).Msg("http request")
	})
}

// httpErrorLog sends net/http's own error messages (TLS handshake failures,
// broken connections) to zerolog at Debug level: they are about clients.
type httpErrorLog struct{ log zerolog.Logger }

func (h httpErrorLog) Write(p []byte) (int, error) {
	h.log.Debug().Str("error", strings.TrimSpace(string(p))).Msg("http server error")
	return len(p), nil
}
