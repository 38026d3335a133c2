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

// serve starts a server of one process on n loopback ports from FreePort
// and waits until it listens on the first and answers GET path there with
// any HTTP response; cmd gives its environment and arguments for the
// ports. A port taken before the server binds it moves the server to new
// ports (testio.StartServer). It returns the ports.
func serve(t testing.TB, name, bin string, n int, path string, cmd func(ports []int) (env, args []string)) []int {
	t.Helper()
	return testio.StartServer(t, n, func(a *testio.Attempt) error {
		env, args := cmd(a.Ports)
		p := a.Start(name, env, bin, args...)
		return p.Listen(a.Ports[0], 90*time.Second, answers(fmt.Sprintf("http://127.0.0.1:%d%s", a.Ports[0], path)))
	})
}

// answers returns a check of a server's readiness: GET url gets any HTTP
// response.
func answers(url string) func() bool {
	client := &http.Client{Timeout: 2 * time.Second}
	return func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}
}

// MinIO starts a MinIO server and returns the config of a new bucket on it,
// with a 5 MiB part size (S3's minimum) so that tests exercise multipart
// uploads with small objects.
func MinIO(t testing.TB) storage.Config {
	t.Helper()
	bin := binary(t, "bin/minio")
	env := []string{
		"MINIO_ROOT_USER=" + minioUser,
		"MINIO_ROOT_PASSWORD=" + minioPassword,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	}
	port := serve(t, "minio", bin, 2, "/minio/health/live", func(ports []int) ([]string, []string) {
		return env, []string{"server", "--quiet", "--address", "127.0.0.1:" + strconv.Itoa(ports[0]),
			"--console-address", "127.0.0.1:" + strconv.Itoa(ports[1]), t.TempDir()}
	})[0]
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
	port := serve(t, "azurite", bin, 1, "/", func(ports []int) ([]string, []string) {
		return nil, []string{"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(ports[0]), "--location", t.TempDir(),
			"--skipApiVersionCheck", "--disableTelemetry", "--silent"}
	})[0]
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
	port := serve(t, "fake-gcs-server", bin, 1, "/storage/v1/b", func(ports []int) ([]string, []string) {
		return nil, []string{"-scheme", "http", "-host", "127.0.0.1", "-port", strconv.Itoa(ports[0]),
			"-public-host", "127.0.0.1:" + strconv.Itoa(ports[0]), "-backend", "memory", "-log-level", "error"}
	})[0]
	host := "127.0.0.1:" + strconv.Itoa(port)
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
