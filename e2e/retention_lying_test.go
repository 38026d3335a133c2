package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// lyingProxy is an HTTP proxy in front of a real S3 server that lies by
// omission about one key: its listings (ListObjects) leave the key out
// and HEAD answers 404 for it, while GET still serves it, as a faulty
// cache or gateway in front of a storage can.
type lyingProxy struct {
	srv    *httptest.Server
	bucket string

	mu     sync.Mutex
	hidden string
	heads  int // HEAD requests answered 404
}

func newLyingProxy(t testing.TB, target storage.Config) *lyingProxy {
	t.Helper()
	p := &lyingProxy{bucket: target.BucketName}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: fmt.Sprintf("%s:%d", target.Host, target.Port)})
	rp.ModifyResponse = func(resp *http.Response) error {
		hidden := p.hiddenKey()
		if hidden == "" || resp.Request.Method != http.MethodGet || resp.Request.URL.Path != "/"+p.bucket && resp.Request.URL.Path != "/"+p.bucket+"/" {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		entry := regexp.MustCompile(`<Contents>(?:[^<]|<[^/]|</[^C])*?<Key>` + regexp.QuoteMeta(hidden) + `</Key>.*?</Contents>`)
		body = entry.ReplaceAll(body, nil)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hidden := p.hiddenKey(); hidden != "" && r.Method == http.MethodHead && r.URL.Path == "/"+p.bucket+"/"+hidden {
			p.mu.Lock()
			p.heads++
			p.mu.Unlock()
			w.WriteHeader(http.StatusNotFound)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// hide makes the proxy lie about key ("" stops it).
func (p *lyingProxy) hide(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hidden = key
}

func (p *lyingProxy) hiddenKey() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hidden
}

// config is the storage config that reaches the server through the proxy.
func (p *lyingProxy) config(direct storage.Config) storage.Config {
	c := direct
	u, _ := url.Parse(p.srv.URL)
	c.Host = u.Hostname()
	c.Port, _ = strconv.Atoi(u.Port())
	return c
}

// bucketKeys lists every object of the bucket c names, straight from
// the server.
func bucketKeys(t testing.TB, c storage.Config) []string {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var keys []string
	if err := st.List(ctx, "", func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// TestRetention_StorageLies: hoard retention against MinIO behind a proxy
// that leaves the older of two backups' main object out of its listings
// and answers HEAD for it with 404 (GET still serves it). Retention must
// exit 1, naming the object, and delete nothing; once the storage answers
// truthfully it runs, and the older backup, restored, recovers every row
// (its WAL was kept). Before, the plan saw only the newer backup and
// deleted the WAL before its start: the older backup's chunk folder was
// not checked while younger than a day, and a HEAD 404 counted as absent.
func TestRetention_StorageLies(t *testing.T) {
	minio := storetest.MinIO(t)
	p := newLyingProxy(t, minio)
	s := newSite(t, siteOptions{ObjectStorage: s3Storage(p.config(minio)), Site: map[string]any{"basebackup_count": 2}})
	src, older, _ := s.twoBackups(t)
	want := tableRows(t, src)
	src.Stop(t)

	before := bucketKeys(t, minio)
	main := archive.Layout{Prefix: s.name}.BackupKey(older)
	if !slices.Contains(before, main) {
		t.Fatalf("no main object of %s among %q", older, before)
	}
	p.hide(main)
	_, errOut, err := s.hoard("retention")
	if got := s.listBackups(); len(got) != 1 {
		t.Fatalf("the proxy does not hide %s from listings: hoard list shows %d backups", main, len(got))
	}
	if exitCode(err) != 1 || !strings.Contains(errOut, main) || !strings.Contains(errOut, "HEAD") {
		t.Errorf("retention on a storage that lies: exit %d, want 1 naming %s and HEAD\n%s", exitCode(err), main, errOut)
	}
	if p.heads == 0 {
		t.Errorf("retention never asked HEAD for %s", main)
	}
	if diff := strings.Join(diffLists(before, bucketKeys(t, minio)), "\n"); diff != "" {
		t.Errorf("retention on a storage that lies changed the bucket:\n%s", diff)
	}

	p.hide("")
	s.mustHoard("retention")
	dir := pgtest.TempDir(t) + "/data"
	s.restoreChoosing(t, dir, older, "--basebackup", older)
	restored := pgtest.StartDataDir(t, 15, dir, noArchiving)
	restored.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, restored); got != want {
		t.Errorf("older backup restored: rows %q, want %q", got, want)
	}
}

// TestDaemon_RetentionStorageLies: the daemon streams WAL into MinIO
// behind the lying proxy. Once the proxy hides the oldest of its backups
// (listings leave its main object out, HEAD answers 404), the retention
// run after the next backup fails: last_retention_error names the
// object, hoard_retention_runs_total counts a failure, and no WAL file
// is deleted, while WAL goes on streaming into the archive. Before, that
// run deleted the WAL from the hidden backup's start.
func TestDaemon_RetentionStorageLies(t *testing.T) {
	minio := storetest.MinIO(t)
	p := newLyingProxy(t, minio)
	s := newStreamSite(t, p.config(minio), minio)
	s.setSiteKey("basebackup_count", 3)
	src := s.startSource(pgtest.Options{})
	src.Exec(t, "create table t (id int primary key)")
	d := s.startDaemon()
	d.waitFirstBackup(s.name, 3*time.Minute, true)
	src.Exec(t, "insert into t values (1)")
	s.switchAndWaitStored(d, src, time.Minute)
	s.mustHoard("basebackup")
	d.waitFor("the second backup and its retention run", 3*time.Minute, func() bool {
		st, ok := d.status()
		return ok && st.Sites[s.name].Backups == 2 && !st.Sites[s.name].BackupRunning && st.Sites[s.name].LastRetention != nil
	})
	var mains []string
	if err := s.store.List(context.Background(), s.name+"/basebackup/", func(o storage.Object) error {
		mains = append(mains, o.Key)
		return nil
	}); err != nil || len(mains) != 2 {
		t.Fatalf("main objects %q, %v: want 2", mains, err)
	}
	// The oldest by its start, as hoard list orders: not the first name
	// in lexical order, as a name's number is the milliseconds into its
	// minute (2026-12-05_04-01_12136 sorts before 2026-12-05_04-01_3329).
	oldest := s.listBackups()[0].Name
	hidden := archive.Layout{Prefix: s.name}.BackupKey(oldest)
	if !slices.Contains(mains, hidden) {
		t.Fatalf("main objects %q do not hold the oldest backup's %s", mains, hidden)
	}
	wal := s.storedWAL()
	p.hide(hidden)

	s.mustHoard("basebackup")
	d.waitFor("the retention run after the third backup failing", 3*time.Minute, func() bool {
		st, ok := d.status()
		return ok && strings.Contains(st.Sites[s.name].LastRetentionError, hidden)
	})
	failed := regexp.MustCompile(`(?m)^hoard_retention_runs_total\{[^}]*result="failure"[^}]*\} ([0-9.e+]+)$`)
	if m, ok := d.get("/metrics"); !ok || failed.FindStringSubmatch(m) == nil || failed.FindStringSubmatch(m)[1] == "0" {
		runs := regexp.MustCompile(`(?m)^hoard_retention_runs_total.*$`)
		t.Errorf("/metrics does not count a failed retention run:\n%s", strings.Join(runs.FindAllString(m, -1), "\n"))
	}
	for _, w := range wal {
		if !s.stored(w) {
			t.Errorf("WAL %s deleted while the storage hid backup %s", w, oldest)
		}
	}
	src.Exec(t, "insert into t values (2)")
	s.switchAndWaitStored(d, src, time.Minute)
}
