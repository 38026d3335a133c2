package storage_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// whereSame checks that a and b, two spellings that Where makes one place
// and prefix, reach the same objects: an object put through a is found
// through b with its size, under the same key.
func whereSame(t *testing.T, a, b storage.Config) {
	t.Helper()
	sa, pa := a.Where()
	sb, pb := b.Where()
	if sa != sb || pa != pb {
		t.Fatalf("Where: %q %q and %q %q, want one place", sa, pa, sb, pb)
	}
	ctx := context.Background()
	stA, err := storage.Open(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer stA.Close()
	stB, err := storage.Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer stB.Close()
	const key, body = "site/xlog/000000010000000000000001", "through a"
	if err := stA.Put(ctx, key, strings.NewReader(body), nil); err != nil {
		t.Fatal(err)
	}
	o, err := stB.Stat(ctx, key)
	if err != nil {
		t.Fatalf("object put through %+v, stat through %+v: %v", a, b, err)
	}
	if o.Size != int64(len(body)) {
		t.Errorf("size %d through the other spelling, want %d", o.Size, len(body))
	}
}

// A local storage directory with a prefix and a file:// URL naming the
// directory joined with the prefix have one Where: they reach the same
// files.
func TestLocal_WhereFileURL(t *testing.T) {
	dir := t.TempDir()
	whereSame(t, storage.Config{Type: storage.TypeLocal, Directory: dir, Prefix: "p/"},
		storage.Config{URL: "file://" + filepath.ToSlash(filepath.Join(dir, "p")) + "?create_dir=true"})
}

// storage_type s3 and an s3:// URL naming MinIO's endpoint with its host
// in other case, its port and a trailing slash have one Where: they reach
// the same objects. Another port is another place.
func TestMinIO_WhereURL(t *testing.T) {
	c := storetest.MinIO(t)
	t.Setenv("AWS_ACCESS_KEY_ID", c.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", c.SecretAccessKey)
	c.Host, c.Prefix = "LocalHost", "p"
	u := storage.Config{URL: fmt.Sprintf("s3://%s?endpoint=http://localhost:%d/&region=%s&use_path_style=true", c.BucketName, c.Port, c.Region), Prefix: "/p/"}
	whereSame(t, c, u)
	other := u
	other.URL = fmt.Sprintf("s3://%s?endpoint=http://localhost:%d/&region=%s&use_path_style=true", c.BucketName, c.Port+1, c.Region)
	if s, _ := other.Where(); s == func() string { s, _ := c.Where(); return s }() {
		t.Errorf("another port, one server %q", s)
	}
}

// storage_type azure at Azurite and an azblob:// URL naming its endpoint
// (the account and key from the environment, as gocloud takes them) have
// one Where: they reach the same objects. Another port is another place.
func TestAzurite_WhereURL(t *testing.T) {
	c := storetest.Azurite(t)
	t.Setenv("AZURE_STORAGE_ACCOUNT", c.AccountName)
	t.Setenv("AZURE_STORAGE_KEY", c.AccountKey)
	c.Prefix = "p"
	u := storage.Config{URL: fmt.Sprintf("azblob://%s?protocol=http&domain=127.0.0.1:%d&localemu=true", c.BucketName, c.Port), Prefix: "p/"}
	whereSame(t, c, u)
	other := u
	other.URL = fmt.Sprintf("azblob://%s?protocol=http&domain=127.0.0.1:%d&localemu=true", c.BucketName, c.Port+1)
	if s, _ := other.Where(); s == func() string { s, _ := c.Where(); return s }() {
		t.Errorf("another port, one server %q", s)
	}
}
