package storetest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// Azurite's well-known development account (public, documented by
// Microsoft; not a secret).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// MinIO's credentials in tests.
const (
	minioUser     = "hoardtest"
	minioPassword = "hoardtest-secret"
)

// Unavailable is testio.Unavailable, for the tests that call it by this
// package's name.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	testio.Unavailable(t, format, args...)
}

// binary returns the path of a server binary, or skips.
func binary(t testing.TB, rel string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no storage servers")
	}
	p := filepath.Join(testio.CacheDir(), rel)
	if _, err := os.Stat(p); err != nil {
		testio.Unavailable(t, "%s not installed (run scripts/deps.sh): %v", p, err)
	}
	return p
}

// start runs a server until the test ends and waits until GET url answers
// with any HTTP response.
func start(t testing.TB, name string, env []string, url string, bin string, args ...string) {
	t.Helper()
	startWait(t, name, env, url, 90*time.Second, bin, args...)
}

// startWait is start with a time limit for the server to answer.
func startWait(t testing.TB, name string, env []string, url string, timeout time.Duration, bin string, args ...string) {
	t.Helper()
	exited, out := run(t, name, env, bin, args...)
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case err := <-exited:
			t.Fatalf("%s exited before answering: %v\n%s", name, err, out.String())
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer at %s: %v\n%s", name, url, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run starts a process in its own process group, stopped (SIGTERM, then
// SIGKILL after 10 s) when the test ends. The channel receives its exit;
// the buffer collects its output.
func run(t testing.TB, name string, env []string, bin string, args ...string) (<-chan error, *testio.SyncBuffer) {
	t.Helper()
	p := testio.Start(t, name, env, bin, args...)
	return p.Exited, p.Out
}

// MinIO starts a MinIO server and returns the config of a new bucket on it,
// with a 5 MiB part size (S3's minimum) so that tests exercise multipart
// uploads with small objects.
func MinIO(t testing.TB) storage.Config {
	t.Helper()
	bin := binary(t, "bin/minio")
	port, console := testio.FreePort(t), testio.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	start(t, "minio", []string{
		"MINIO_ROOT_USER=" + minioUser,
		"MINIO_ROOT_PASSWORD=" + minioPassword,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	}, "http://"+addr+"/minio/health/live", bin,
		"server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:"+strconv.Itoa(console), t.TempDir())
	c := storage.Config{
		Type:            "s3",
		Region:          "us-east-1",
		BucketName:      "hoard-test",
		AccessKeyID:     minioUser,
		SecretAccessKey: minioPassword,
		Host:            "127.0.0.1",
		Port:            port,
		SegmentSize:     5 << 20,
	}
	client := Client[*s3.Client](t, openStore(t, c))
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(c.BucketName)}); err != nil {
		t.Fatalf("minio: create bucket: %v", err)
	}
	return c
}

// Azurite starts Azurite's blob service and returns the config of a new
// container on it, for the well-known development account.
func Azurite(t testing.TB) storage.Config {
	t.Helper()
	bin := binary(t, "azurite/node_modules/.bin/azurite-blob")
	port := testio.FreePort(t)
	start(t, "azurite", nil, fmt.Sprintf("http://127.0.0.1:%d/", port), bin,
		"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port), "--location", t.TempDir(),
		"--skipApiVersionCheck", "--disableTelemetry", "--silent")
	c := storage.Config{
		Type:        "azure",
		AccountName: AzuriteAccount,
		AccountKey:  AzuriteKey,
		BucketName:  "hoard-test",
		Host:        "127.0.0.1",
		Port:        port,
		SegmentSize: 4 << 20,
	}
	client := Client[*container.Client](t, openStore(t, c))
	if _, err := client.Create(context.Background(), nil); err != nil {
		t.Fatalf("azurite: create container: %v", err)
	}
	return c
}

// FakeGCS starts fake-gcs-server (in-memory) and returns the config of a new
// bucket on it. It sets STORAGE_EMULATOR_HOST for the test, which is how the
// GCS client finds the emulator, so the test cannot be parallel.
func FakeGCS(t testing.TB) storage.Config {
	t.Helper()
	bin := binary(t, "bin/fake-gcs-server")
	port := testio.FreePort(t)
	host := "127.0.0.1:" + strconv.Itoa(port)
	start(t, "fake-gcs-server", nil, "http://"+host+"/storage/v1/b", bin,
		"-scheme", "http", "-host", "127.0.0.1", "-port", strconv.Itoa(port),
		"-public-host", host, "-backend", "memory", "-log-level", "error")
	t.Setenv("STORAGE_EMULATOR_HOST", host)
	c := storage.Config{Type: "google", BucketName: "hoard-test", ProjectID: "hoard", SegmentSize: 1 << 20}
	resp, err := http.Post("http://"+host+"/storage/v1/b?project=hoard", "application/json",
		strings.NewReader(`{"name":"`+c.BucketName+`"}`))
	if err != nil {
		t.Fatalf("fake-gcs-server: create bucket: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fake-gcs-server: create bucket: %s", resp.Status)
	}
	return c
}

// Local returns the config of a local store in a new temporary directory.
func Local(t testing.TB) storage.Config {
	t.Helper()
	return storage.Config{Type: "local", Directory: t.TempDir()}
}

// Server is a storage backend a test can run against: Config starts its
// server (none for Local) and returns the config of an empty store on it.
type Server struct {
	Name   string
	Config func(t testing.TB) storage.Config
}

// Servers are every backend hoard supports, for a test that must hold on
// each.
var Servers = []Server{
	{"Local", Local},
	{"MinIO", MinIO},
	{"Azurite", Azurite},
	{"FakeGCS", FakeGCS},
	{"Swift", Swift},
	{"SFTP", func(t testing.TB) storage.Config { return SFTP(t).Config }},
}

// ObjectStorage returns c as a site's object_storage in a hoard
// configuration file, for the tests that run hoard's commands.
func ObjectStorage(c storage.Config) map[string]any {
	m := map[string]any{"storage_type": c.Type, "prefix": c.Prefix}
	set := func(kv ...any) {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	switch c.Type {
	case "s3":
		set("region", c.Region, "bucket_name", c.BucketName, "aws_access_key_id", c.AccessKeyID,
			"aws_secret_access_key", c.SecretAccessKey, "host", c.Host, "port", c.Port, "is_secure", c.IsSecure)
	case "azure":
		set("account_name", c.AccountName, "account_key", c.AccountKey, "bucket_name", c.BucketName,
			"host", c.Host, "port", c.Port, "is_secure", c.IsSecure)
	case "google":
		set("project_id", c.ProjectID, "bucket_name", c.BucketName)
	case "swift":
		set("user", c.User, "key", c.Key, "auth_url", c.AuthURL, "auth_version", c.AuthVersion, "container_name", c.ContainerName)
	case "sftp":
		set("server", c.Server, "port", c.Port, "username", c.Username, "private_key", c.PrivateKey,
			"known_hosts_file", c.KnownHostsFile, "directory", c.Directory)
	case "local":
		set("directory", c.Directory)
	}
	if c.SegmentSize != 0 {
		m["segment_size"] = c.SegmentSize
	}
	return m
}

var prefixes atomic.Int64

// Open opens c under a prefix of its own (c.Prefix/tN), so that tests can
// share a bucket, and closes the store when the test ends.
func Open(t testing.TB, c storage.Config) storage.Store {
	t.Helper()
	c.Prefix = strings.Trim(c.Prefix+"/t"+strconv.FormatInt(prefixes.Add(1), 10), "/")
	return openStore(t, c)
}

// Client returns the backend's own client behind st (*s3.Client,
// *container.Client, …), as storage.Bucket.As gives it; it fails the test
// when st has no client of type C.
func Client[C any](t testing.TB, st storage.Store) C {
	t.Helper()
	var client C
	if b, ok := st.(*storage.Bucket); !ok || !b.As(&client) {
		t.Fatalf("store %T has no %T", st, client)
	}
	return client
}

func openStore(t testing.TB, c storage.Config) storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), c)
	if err != nil {
		t.Fatalf("open %s store: %v", c.Type, err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close %s store: %v", c.Type, err)
		}
	})
	return st
}
