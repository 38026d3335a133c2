package command

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// archive-copy refuses a target that is its source: the same storage
// (object_storage equal key for key) and the same site prefix.
func TestArchiveCopy_RefusesItself(t *testing.T) {
	dir := t.TempDir()
	write := func(name, prefix string) string {
		p := filepath.Join(dir, name)
		js := `{"backup_location": "` + dir + `", "backup_sites": {"s": {"object_storage": {"url": "mem://", "prefix": "` + prefix + `"}}}}`
		if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src, same, other := write("src.json", "a"), write("same.json", "a"), write("other.json", "b")
	for _, tc := range []struct {
		to   string
		self bool
	}{{same, true}, {other, false}} {
		app := App("test")
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		err := app.RunContext(context.Background(), OrderArgs(app, []string{"hoard", "--config", src, "archive-copy", "--to-config", tc.to}))
		if self := err != nil && strings.Contains(err.Error(), "the target is the source itself"); self != tc.self {
			t.Errorf("--to-config %s: err = %v, want refused as the source itself: %v", filepath.Base(tc.to), err, tc.self)
		}
		if tc.self && ExitCode(err) != ExitUsage {
			t.Errorf("--to-config %s: exit %d, want %d", filepath.Base(tc.to), ExitCode(err), ExitUsage)
		}
	}
}

// archive-copy refuses a target whose objects are the source's under
// another spelling, or lie inside the source's (or hold them): the same
// local directory written with a trailing slash, part of the site prefix
// moved into the object_storage prefix, a directory joined with the prefix, a site
// prefix below the other. A target inside the source is listed with the
// source, so each run copied the last run's copy again, one level
// deeper; a source inside the target is mixed into the target site's
// keys. Sites beside each other ("a/b" and "a/bc") stay allowed.
func TestArchiveCopy_RefusesOverlap(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	other := filepath.Join(dir, "other")
	n := 0
	write := func(directory, storagePrefix, sitePrefix string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.json", n))
		js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": %q, "object_storage": {"storage_type": "local", "directory": %q, "prefix": %q}}}}`,
			dir, sitePrefix, directory, storagePrefix)
		if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The source: site s at a/b/ in store.
	src := write(store, "", "a/b")
	if err := os.MkdirAll(filepath.Join(store, "a", "b", "xlog"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		to      string
		refused bool
	}{
		{"TrailingSlash", write(store+"/", "", "a/b/"), true},
		{"StoragePrefix", write(store, "/a/", "b"), true},
		{"DirectoryJoined", write(filepath.Join(store, "a"), "", "b"), true},
		{"TargetInside", write(store, "", "a/b/c"), true},
		{"SourceInside", write(store, "", "a"), true},
		{"Beside", write(store, "", "a/bc"), false},
		{"OtherDirectory", write(other, "", "a/b"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := App("test")
			app.Writer, app.ErrWriter = io.Discard, io.Discard
			err := app.RunContext(context.Background(), OrderArgs(app, []string{"hoard", "--config", src, "archive-copy", "--to-config", tc.to, "--allow-root"}))
			refused := err != nil && strings.Contains(err.Error(), "overlap")
			if refused != tc.refused {
				t.Fatalf("err = %v, want refused for overlapping the source: %v", err, tc.refused)
			}
			if tc.refused && ExitCode(err) != ExitUsage {
				t.Errorf("exit %d, want %d", ExitCode(err), ExitUsage)
			}
			if !tc.refused && err != nil {
				t.Errorf("copy beside the source: %v", err)
			}
		})
	}
}

// archive-copy refuses a target that is the source, or overlaps it,
// written in another form: a file:// URL naming the local storage
// directory (and the reverse), an s3:// URL naming the source's S3
// endpoint and bucket with its host in capitals, the default port left
// out or written, a trailing slash. Before, each of these was another
// place, and the copy went onto the source itself or inside it
// (storage's TestConfig_Where has the spellings of other places).
func TestArchiveCopy_RefusesOtherSpelling(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(filepath.Join(store, "a", "xlog"), 0o700); err != nil {
		t.Fatal(err)
	}
	n := 0
	write := func(storage, sitePrefix string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.json", n))
		js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": %q, "object_storage": %s}}}`, dir, sitePrefix, storage)
		if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	local := fmt.Sprintf(`{"storage_type": "local", "directory": %q}`, store)
	fileURL := fmt.Sprintf(`{"url": "file://%s"}`, filepath.ToSlash(store))
	minio := `{"storage_type": "s3", "bucket_name": "b", "region": "r", "host": "minio", "port": 9000}`
	for _, tc := range []struct {
		name     string
		from, to string
		refused  string
	}{
		{"LocalToFileURL", write(local, "a"), write(fileURL, "a"), "the target is the source itself"},
		{"FileURLToLocal", write(fileURL, "a"), write(local, "a/"), "the target is the source itself"},
		{"FileURLInside", write(local, "a"), write(fmt.Sprintf(`{"url": "file://%s/a?create_dir=true"}`, filepath.ToSlash(store)), "b"), "inside the source's"},
		{"S3URL", write(minio, "a"), write(`{"url": "s3://b?endpoint=http://MinIO:9000/&region=r", "prefix": "a"}`, "x"), "inside the source's"},
		{"S3DefaultPort", write(`{"storage_type": "s3", "bucket_name": "b", "region": "r", "host": "s3.example.com", "is_secure": true}`, "a"),
			write(`{"url": "s3://b?endpoint=https://s3.example.com:443"}`, "a"), "the target is the source itself"},
		{"AWSEndpoint", write(`{"storage_type": "s3", "bucket_name": "b", "region": "eu-west-1"}`, "a"),
			write(`{"storage_type": "s3", "bucket_name": "b", "region": "eu-west-1", "host": "s3.eu-west-1.amazonaws.com", "is_secure": true}`, "a"), "the target is the source itself"},
		{"SFTPDirectoryJoined", write(`{"storage_type": "sftp", "server": "backup.example", "username": "u", "password": "pw", "insecure_ignore_host_key": true, "directory": "/srv", "prefix": "a"}`, "s"),
			write(`{"storage_type": "sftp", "server": "Backup.Example", "port": 22, "username": "v", "password": "pw", "insecure_ignore_host_key": true, "directory": "/srv/a/"}`, "s"), "the target is the source itself"},
		{"SwiftAuthURL", write(`{"storage_type": "swift", "user": "u", "key": "swift-key", "auth_url": "https://keystone.example:5000/v3", "auth_version": "3.0", "project_name": "db", "container_name": "pghoard"}`, "a"),
			write(`{"storage_type": "swift", "user": "v", "key": "swift-key", "auth_url": "https://Keystone.Example:5000/v3/", "auth_version": "3.0", "tenant_name": "db", "region_name": "RegionOne", "container_name": "pghoard"}`, "a"), "the target is the source itself"},
		{"Loopback", write(strings.Replace(minio, `"minio"`, `"localhost"`, 1), "a"), write(strings.Replace(minio, `"minio"`, `"127.0.0.1"`, 1), "a"), "the target is the source itself"},
		{"LoopbackInside", write(strings.Replace(minio, `"minio"`, `"localhost"`, 1), "a"), write(strings.Replace(minio, `"minio"`, `"[::1]"`, 1), "a/b"), "inside the source's"},
		{"Unresolved", write(strings.Replace(minio, `"minio"`, `"nowhere.invalid"`, 1), "a"), write(strings.Replace(minio, `"minio"`, `"127.0.0.1"`, 1), "a"), "cannot tell whether"},
		{"AzureURL", write(`{"storage_type": "azure", "account_name": "devstoreaccount1", "account_key": "a2V5", "bucket_name": "c", "host": "127.0.0.1", "port": 10000, "is_secure": false}`, "a"),
			write(`{"url": "azblob://c?protocol=http&domain=127.0.0.1:10000&storage_account=devstoreaccount1"}`, "a/"), "the target is the source itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := App("test")
			app.Writer, app.ErrWriter = io.Discard, io.Discard
			err := app.RunContext(context.Background(), OrderArgs(app, []string{"hoard", "--config", tc.from, "archive-copy", "--to-config", tc.to, "--allow-root"}))
			if err == nil || !strings.Contains(err.Error(), tc.refused) {
				t.Fatalf("err = %v, want refused: %q", err, tc.refused)
			}
			if ExitCode(err) != ExitUsage {
				t.Errorf("exit %d, want %d", ExitCode(err), ExitUsage)
			}
		})
	}
}

// archive-copy's closing error says what to do: a failed object is retried
// by running the command again once its cause is fixed; a conflict is the
// user's to look at, left alone.
func TestArchiveCopy_ErrSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	write := func(name, directory string) string {
		p := filepath.Join(dir, name)
		js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"object_storage": {"storage_type": "local", "directory": %q}}}}`, dir, directory)
		if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src, dst := write("src.json", filepath.Join(dir, "a")), write("dst.json", filepath.Join(dir, "b"))
	file := filepath.Join(dir, "f")
	for _, f := range []struct{ cfg, data string }{{src, "source bytes"}, {dst, "other"}} {
		if err := os.WriteFile(file, []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, msg := runErr(t, "object", "put", "--allow-root", "--config", f.cfg, file, "s/xlog/000000010000000000000001"); code != 0 {
			t.Fatalf("object put: exit %d: %s", code, msg)
		}
	}
	// A second source object that does not decode: FAILED.
	if code, msg := runErr(t, "object", "put", "--allow-root", "--config", src, file, "s/xlog/000000010000000000000002"); code != 0 {
		t.Fatalf("object put: exit %d: %s", code, msg)
	}
	obj := filepath.Join(dir, "a", "s", "xlog", "000000010000000000000002")
	if err := os.WriteFile(obj, []byte("not a snappy stream"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, msg := runErr(t, "archive-copy", "--allow-root", "--config", src, "--to-config", dst)
	if code != ExitFailure {
		t.Fatalf("archive-copy onto a conflict: exit %d (%s), want %d", code, msg, ExitFailure)
	}
	for _, want := range []string{"2 objects not copied", "run archive-copy again", "CONFLICT", "object ls --long"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
}
