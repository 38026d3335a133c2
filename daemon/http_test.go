package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/metrics"
)

// testServer is a ServeHTTP running on a real loopback listener.
type testServer struct {
	url    string
	addr   net.Addr
	client *http.Client
	cancel context.CancelFunc
	done   chan error
}

// startHTTP runs ServeHTTP on 127.0.0.1 and a free port, and stops it at
// the end of the test, failing the test if it does not return nil.
func startHTTP(t testing.TB, o HTTPOptions) *testServer {
	t.Helper()
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	addrc := make(chan net.Addr, 1)
	o.Listening = func(a net.Addr) { addrc <- a }
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{cancel: cancel, done: make(chan error, 1), client: &http.Client{Timeout: 30 * time.Second}}
	go func() { s.done <- ServeHTTP(ctx, o) }()
	select {
	case s.addr = <-addrc:
	case err := <-s.done:
		cancel()
		t.Fatalf("ServeHTTP: %v", err)
	}
	scheme := "http"
	if o.TLSCertFile != "" {
		scheme = "https"
	}
	s.url = scheme + "://" + s.addr.String()
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("ServeHTTP returned %v after cancel", err)
		}
	})
	return s
}

// stop cancels the server and waits for ServeHTTP to return; calling it
// again returns nil.
func (s *testServer) stop() error {
	s.cancel()
	err, ok := <-s.done
	if ok {
		close(s.done)
	}
	return err
}

// do sends a request and returns the status, body and response.
func (s *testServer) do(t testing.TB, method, path, user, pass string) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp
}

// fakeSites is RequestBackup for sites "main" (pending after one request)
// and "broken" (always fails).
type fakeSites struct {
	mu        sync.Mutex
	requested []string
	stored    []string // BackupStored's sites
}

func (f *fakeSites) RequestBackup(site string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch site {
	case "main", "other":
		for _, r := range f.requested {
			if r == site {
				return "", fmt.Errorf("site %s: %w", site, ErrBackupPending)
			}
		}
		f.requested = append(f.requested, site)
		return "r" + strconv.Itoa(len(f.requested)), nil
	case "broken":
		return "", errors.New("site broken: scheduler stopped")
	case "maint":
		return "", fmt.Errorf("site maint: %w", ErrMaintenance)
	case "stopping":
		return "", fmt.Errorf("site stopping: %w", ErrSiteStopping)
	default:
		return "", fmt.Errorf("site %q: %w", site, ErrUnknownSite)
	}
}

// BackupStored is BackupStored for the sites RequestBackup knows.
func (f *fakeSites) BackupStored(site string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch site {
	case "main", "other":
		f.stored = append(f.stored, site)
		return nil
	case "maint":
		return fmt.Errorf("site maint: %w", ErrMaintenance)
	case "broken":
		return errors.New("site broken: scheduler stopped")
	default:
		return fmt.Errorf("site %q: %w", site, ErrUnknownSite)
	}
}

func TestServeHTTP_Endpoints(t *testing.T) {
	m := metrics.New(map[string]string{"instance": "db1"})
	m.Gauge("hoard_wal_lag_bytes", "Lag.", map[string]string{"site": "main"}).Set(42)
	var unhealthy error
	var mu sync.Mutex
	sites := &fakeSites{}
	var logBuf testio.SyncBuffer
	s := startHTTP(t, HTTPOptions{
		Status:        func() any { return map[string]any{"sites": map[string]any{"main": map[string]int{"queue_depth": 3}}} },
		Metrics:       m,
		RequestBackup: sites.RequestBackup,
		BackupStored:  sites.BackupStored,
		Healthy: func() error {
			mu.Lock()
			defer mu.Unlock()
			return unhealthy
		},
		Logger: zerolog.New(&logBuf).Level(zerolog.DebugLevel),
	})

	t.Run("HealthzOK", func(t *testing.T) {
		code, body, _ := s.do(t, "GET", "/healthz", "", "")
		if code != 200 || body != "ok\n" {
			t.Errorf("got %d %q, want 200 ok", code, body)
		}
	})
	t.Run("HealthzErr", func(t *testing.T) {
		mu.Lock()
		unhealthy = errors.New("site main: wal receiver down for 5m0s")
		mu.Unlock()
		defer func() { mu.Lock(); unhealthy = nil; mu.Unlock() }()
		code, body, _ := s.do(t, "GET", "/healthz", "", "")
		if code != 503 || !strings.Contains(body, "wal receiver down") {
			t.Errorf("got %d %q, want 503 with the error", code, body)
		}
	})
	t.Run("Status", func(t *testing.T) {
		code, body, resp := s.do(t, "GET", "/status", "", "")
		if code != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("got %d %s", code, resp.Header.Get("Content-Type"))
		}
		want := "{\n  \"sites\": {\n    \"main\": {\n      \"queue_depth\": 3\n    }\n  }\n}\n"
		if body != want {
			t.Errorf("body %q, want indented %q", body, want)
		}
	})
	t.Run("Metrics", func(t *testing.T) {
		code, body, resp := s.do(t, "GET", "/metrics", "", "")
		if code != 200 || resp.Header.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
			t.Fatalf("got %d %s", code, resp.Header.Get("Content-Type"))
		}
		// The registry's exposition is tested in package metrics; here, that
		// /metrics serves it.
		if want := "\nhoard_wal_lag_bytes{instance=\"db1\",site=\"main\"} 42\n"; !strings.Contains(body, want) {
			t.Errorf("body %q lacks %q", body, want)
		}
	})
	for _, tc := range []struct {
		name, method, path string
		code               int
	}{
		{"BackupPUTArchive", "PUT", "/main/archive/basebackup", 201},
		{"ErrBackupPending", "POST", "/main/basebackup", 409},
		{"BackupPOST", "POST", "/other/basebackup", 201},
		{"ErrBackupPendingArchive", "POST", "/other/archive/basebackup", 409},
		{"ErrUnknownSite", "POST", "/nosuch/basebackup", 404},
		{"ErrUnknownSiteArchive", "PUT", "/nosuch/archive/basebackup", 404},
		{"ErrBackupFailed", "POST", "/broken/basebackup", 500},
		{"ErrMaintenance", "POST", "/maint/basebackup", 503},
		{"ErrSiteStopping", "POST", "/stopping/basebackup", 503},
		{"ErrMethodBackup", "GET", "/main/basebackup", 405},
		{"ErrMethodMetrics", "POST", "/metrics", 405},
		{"ErrNotFound", "GET", "/nothing/here", 404},
		{"BackupStored", "POST", "/main/backup-stored", 202},
		{"ErrBackupStoredMaintenance", "POST", "/maint/backup-stored", 503},
		{"ErrBackupStoredUnknownSite", "POST", "/nosuch/backup-stored", 404},
		{"ErrBackupStored", "POST", "/broken/backup-stored", 500},
		{"ErrMethodBackupStored", "GET", "/main/backup-stored", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := s.do(t, tc.method, tc.path, "", "")
			if code != tc.code {
				t.Errorf("%s %s = %d %q, want %d", tc.method, tc.path, code, body, tc.code)
			}
		})
	}
	if diff := cmp.Diff([]string{"main", "other"}, sites.requested); diff != "" {
		t.Errorf("requested (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"main"}, sites.stored); diff != "" {
		t.Errorf("told of stored backups (-want +got):\n%s", diff)
	}

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	logs := logBuf.String()
	for _, want := range []string{
		`"component":"http"`,
		`"message":"http server listening"`,
		`"level":"debug","component":"http","method":"POST","path":"/nosuch/basebackup","status":404`,
		`"message":"http server stopped"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func TestServeHTTP_NotConfigured(t *testing.T) {
	s := startHTTP(t, HTTPOptions{Logger: zerolog.Nop()})
	for path, code := range map[string]int{"/healthz": 200, "/status": 501, "/metrics": 501} {
		if got, body, _ := s.do(t, "GET", path, "", ""); got != code {
			t.Errorf("GET %s = %d %q, want %d", path, got, body, code)
		}
	}
	for _, path := range []string{"/main/basebackup", "/main/backup-stored"} {
		if got, body, _ := s.do(t, "POST", path, "", ""); got != 501 {
			t.Errorf("POST %s = %d %q, want 501", path, got, body)
		}
	}
}

func TestServeHTTP_Auth(t *testing.T) {
	s := startHTTP(t, HTTPOptions{
		Username: "monitor", Password: "s3cret",
		Status:        func() any { return "fine" },
		Metrics:       metrics.New(nil),
		RequestBackup: (&fakeSites{}).RequestBackup,
		Logger:        zerolog.Nop(),
	})
	for _, tc := range []struct {
		name, method, path, user, pass string
		code                           int
	}{
		{"HealthzNoAuth", "GET", "/healthz", "", "", 200},
		{"OKStatus", "GET", "/status", "monitor", "s3cret", 200},
		{"OKMetrics", "GET", "/metrics", "monitor", "s3cret", 200},
		{"OKBackup", "PUT", "/main/archive/basebackup", "monitor", "s3cret", 201},
		{"ErrNoAuthStatus", "GET", "/status", "", "", 401},
		{"ErrNoAuthMetrics", "GET", "/metrics", "", "", 401},
		{"ErrNoAuthBackup", "POST", "/other/basebackup", "", "", 401},
		{"ErrNoAuthNotFound", "GET", "/nothing", "", "", 401},
		{"ErrPassword", "GET", "/status", "monitor", "s3cre", 401},
		{"ErrUser", "GET", "/status", "monitorx", "s3cret", 401},
		{"ErrEmptyPassword", "GET", "/status", "monitor", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, resp := s.do(t, tc.method, tc.path, tc.user, tc.pass)
			if code != tc.code {
				t.Fatalf("%s %s = %d %q, want %d", tc.method, tc.path, code, body, tc.code)
			}
			if code == 401 {
				if got, want := resp.Header.Get("WWW-Authenticate"), `Basic realm="hoard", charset="UTF-8"`; got != want {
					t.Errorf("WWW-Authenticate = %q, want %q", got, want)
				}
			}
		})
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key,
// and returns their paths and a pool trusting the certificate.
func selfSigned(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "hoard test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServeHTTP_TLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	s := startHTTP(t, HTTPOptions{
		TLSCertFile: certFile, TLSKeyFile: keyFile,
		Username: "monitor", Password: "pw",
		Status: func() any { return []int{1} },
		Logger: zerolog.Nop(),
	})
	s.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	code, body, resp := s.do(t, "GET", "/status", "monitor", "pw")
	if code != 200 || body != "[\n  1\n]\n" {
		t.Errorf("GET /status over TLS = %d %q", code, body)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("connection state %+v, want TLS 1.2 or later", resp.TLS)
	}
	if code, _, _ := s.do(t, "GET", "/status", "", ""); code != 401 {
		t.Errorf("GET /status over TLS without auth = %d, want 401", code)
	}

	t.Run("ErrTLS11", func(t *testing.T) {
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
		}}}
		if resp, err := c.Get(s.url + "/healthz"); err == nil {
			resp.Body.Close()
			t.Error("TLS 1.1 client was served")
		}
	})
	t.Run("ErrPlainHTTP", func(t *testing.T) {
		resp, err := http.Get("http://" + s.addr.String() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Error("plain HTTP was served on the TLS port")
			}
		}
	})
}

func TestServeHTTP_Err(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name string
		o    HTTPOptions
		want string
	}{
		{"ErrInUse", HTTPOptions{Address: "127.0.0.1", Port: busyPort}, fmt.Sprintf("http_port %d on 127.0.0.1 is in use", busyPort)},
		{"ErrAddress", HTTPOptions{Address: "192.0.2.1", Port: 0}, "http_address 192.0.2.1 is not an address of this host: set http_address to one of its addresses"},
		{"ErrCertOnly", HTTPOptions{Address: "127.0.0.1", TLSCertFile: certFile}, "both a certificate and a key"},
		{"ErrKeyOnly", HTTPOptions{Address: "127.0.0.1", TLSKeyFile: keyFile}, "both a certificate and a key"},
		{"ErrKeyPair", HTTPOptions{Address: "127.0.0.1", TLSCertFile: keyFile, TLSKeyFile: certFile}, "load tls key pair"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Logger = zerolog.Nop()
			tc.o.Listening = func(net.Addr) { t.Error("listening despite the error") }
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := ServeHTTP(ctx, tc.o) // returns at once: no cancel needed
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestServeHTTP_Address(t *testing.T) {
	for _, tc := range []struct {
		name, address string
		ip            net.IP
	}{
		{"AllIPv4", "", net.IPv4zero},
		{"AllIPv6", "::", net.IPv6unspecified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.address == "::" {
				ln, err := net.Listen("tcp6", "[::1]:0")
				if err != nil {
					t.Skipf("no IPv6 on this host: %v", err)
				}
				ln.Close()
			}
			addrc := make(chan net.Addr, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- ServeHTTP(ctx, HTTPOptions{Address: tc.address, Logger: zerolog.Nop(), Listening: func(a net.Addr) { addrc <- a }})
			}()
			var addr net.Addr
			select {
			case addr = <-addrc:
			case err := <-done:
				cancel()
				t.Fatal(err)
			}
			tcp := addr.(*net.TCPAddr)
			if !tcp.IP.Equal(tc.ip) {
				t.Errorf("bound %v, want %v", tcp.IP, tc.ip)
			}
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", tcp.Port))
			if err != nil {
				t.Error(err)
			} else {
				resp.Body.Close()
			}
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
}

func TestServeHTTP_GracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s := startHTTP(t, HTTPOptions{
		Status: func() any {
			close(entered)
			<-release
			return "done"
		},
		Logger: zerolog.Nop(),
	})
	type result struct {
		code int
		body string
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := s.client.Get(s.url + "/status")
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		resc <- result{resp.StatusCode, string(b), err}
	}()
	<-entered
	s.cancel() // shutdown begins with the request in flight
	close(release)
	r := <-resc
	if r.err != nil || r.code != 200 || r.body != "\"done\"\n" {
		t.Errorf("in-flight request got %d %q %v, want 200 \"done\"", r.code, r.body, r.err)
	}
	if err := s.stop(); err != nil {
		t.Errorf("ServeHTTP = %v, want nil after a graceful shutdown", err)
	}
	if _, err := net.DialTimeout("tcp", s.addr.String(), 5*time.Second); err == nil {
		t.Error("listener still accepting after shutdown")
	}
}
