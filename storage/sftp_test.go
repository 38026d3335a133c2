package storage_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestSFTP runs the conformance suite and the host key checks against a
// real OpenSSH server.
func TestSFTP(t *testing.T) {
	srv := storetest.SFTP(t)
	c := srv.Config
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t testing.TB) storage.Store { return storetest.Open(t, c) })
	})
	ctx := context.Background()
	stat := func(t *testing.T, c storage.Config) error {
		t.Helper()
		st, err := storage.Open(ctx, c)
		if err != nil {
			return err
		}
		defer st.Close()
		_, err = st.Stat(ctx, "site/xlog/000000010000000000000001")
		return err
	}

	// The object's file and a PGHoard sidecar, as rohmu's sftp store and
	// the local store lay them out.
	t.Run("Layout", func(t *testing.T) {
		c := c
		c.Directory = t.TempDir()
		st := storetest.Open(t, c)
		if err := st.Put(ctx, "site/xlog/000000010000000000000001", strings.NewReader("wal"), storage.Metadata{"compression-algorithm": "snappy"}); err != nil {
			t.Fatal(err)
		}
		local := storage.NewLocal(c.Directory)
		var keys []string
		if err := local.List(ctx, "", func(o storage.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || !strings.HasSuffix(keys[0], "/site/xlog/000000010000000000000001") {
			t.Fatalf("local store over the same directory lists %q", keys)
		}
		rc, md, err := local.Open(ctx, keys[0])
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if md.Metadata["compression-algorithm"] != "snappy" {
			t.Errorf("metadata read by the local store = %v", md)
		}
		names := testio.DirNames(t, filepath.Join(c.Directory, filepath.Dir(keys[0])))
		if strings.Join(names, " ") != "000000010000000000000001 000000010000000000000001.metadata" {
			t.Errorf("directory holds %q, want the file and its sidecar only (no temp files)", names)
		}
		// The stored size, as PGHoard's uploader records it.
		sidecar, err := os.ReadFile(filepath.Join(c.Directory, keys[0]+".metadata"))
		if err != nil {
			t.Fatal(err)
		}
		var raw map[string]string
		if err := json.Unmarshal(sidecar, &raw); err != nil || raw["Content-Length"] != "3" {
			t.Errorf("sidecar %s: Content-Length %q, want 3 (%v)", sidecar, raw["Content-Length"], err)
		}
	})

	// A sidecar written by another program reads as the local store (and
	// a sidecar temp, completedSidecar) reads it: numbers and booleans as
	// their text, nulls dropped; a value that is an object or a list
	// makes the object's metadata unreadable, naming the sidecar.
	t.Run("SidecarValues", func(t *testing.T) {
		c := c
		c.Directory = t.TempDir()
		st := storetest.Open(t, c)
		key := "site/xlog/000000010000000000000001"
		if err := st.Put(ctx, key, strings.NewReader("wal"), nil); err != nil {
			t.Fatal(err)
		}
		sidecars, err := filepath.Glob(filepath.Join(c.Directory, "*", "site", "xlog", "*.metadata"))
		if err != nil || len(sidecars) != 1 {
			t.Fatalf("sidecars %q (%v), want one", sidecars, err)
		}
		plant := func(json string) {
			t.Helper()
			if err := os.WriteFile(sidecars[0], []byte(json), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		plant(`{"a": "x", "n": 3, "b": true, "z": null}`)
		o, err := st.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(o.Metadata); got != "map[a:x b:true n:3]" {
			t.Errorf("metadata %s, want map[a:x b:true n:3]", got)
		}
		for _, bad := range []string{`{"a": {"b": 1}}`, `{"a": ["x"]}`, `[]`, `{`} {
			plant(bad)
			if _, err := st.Stat(ctx, key); !errors.Is(err, storage.ErrBadMetadata) || !strings.Contains(err.Error(), ".metadata") {
				t.Errorf("sidecar %s: Stat = %v, want ErrBadMetadata naming the sidecar", bad, err)
			}
		}
	})

	t.Run("HostKeyPinned", func(t *testing.T) {
		pinned := c
		pinned.KnownHostsFile = ""
		pinned.HostKeyFingerprint = ssh.FingerprintSHA256(srv.HostKey)
		if err := stat(t, pinned); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat with the pinned fingerprint = %v, want ErrNotFound (connected)", err)
		}
		pinned.HostKeyFingerprint = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
		if err := stat(t, pinned); !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), "host_key_fingerprint") {
			t.Errorf("Stat with another fingerprint = %v, want ErrPermanent naming host_key_fingerprint", err)
		}
	})

	t.Run("HostKeyUnknown", func(t *testing.T) {
		unknown := c
		unknown.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(unknown.KnownHostsFile, []byte("other.example.com "+string(ssh.MarshalAuthorizedKey(srv.HostKey))), 0o600); err != nil {
			t.Fatal(err)
		}
		err := stat(t, unknown)
		if !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(srv.HostKey)) {
			t.Errorf("Stat of an unknown host = %v, want ErrPermanent with the host key's fingerprint", err)
		}
		insecure := unknown
		insecure.KnownHostsFile = ""
		insecure.InsecureIgnoreHostKey = true
		if err := stat(t, insecure); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat with insecure_ignore_host_key = %v, want ErrNotFound (connected)", err)
		}
	})

	t.Run("HostKeyChanged", func(t *testing.T) {
		changed := c
		changed.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
		other := storetest.WriteKey(t, filepath.Join(t.TempDir(), "other_host_key"))
		line := knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(c.Server, strconv.Itoa(c.Port)))}, other) + "\n"
		if err := os.WriteFile(changed.KnownHostsFile, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := stat(t, changed); !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), "differs") {
			t.Errorf("Stat of a host whose key changed = %v, want ErrPermanent saying it differs", err)
		}
	})

	t.Run("ErrPermanentAuth", func(t *testing.T) {
		wrong := c
		wrong.PrivateKey = filepath.Join(t.TempDir(), "key")
		storetest.WriteKey(t, wrong.PrivateKey)
		if err := stat(t, wrong); !errors.Is(err, storage.ErrPermanent) {
			t.Errorf("Stat with an unauthorized key = %v, want ErrPermanent", err)
		}
	})
}

// TestSFTP_Reconnect: a connection that is lost (here: cut by a proxy in
// front of the server) fails the operation that meets it, and the next
// operation connects again.
func TestSFTP_Reconnect(t *testing.T) {
	srv := storetest.SFTP(t)
	ctx := context.Background()
	c, p := sftpThroughProxy(t, srv)
	st := storetest.Open(t, c)
	const key = "site/xlog/000000010000000000000001"
	if err := st.Put(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if _, err := st.Stat(ctx, key); err == nil {
		t.Fatal("Stat over a cut connection succeeded")
	}
	if _, err := st.Stat(ctx, key); err != nil {
		t.Fatalf("Stat after the cut: %v, want a new connection and the object", err)
	}
}
