package archive

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// restore replaces key's metadata with md, keeping its stored bytes: what
// a writer without keys can do.
func rewriteMetadata(t *testing.T, st storage.Store, key string, edit func(storage.Metadata)) {
	t.Helper()
	storetest.Rewrite(t, st, key, func(data []byte, md storage.Metadata) []byte {
		edit(md)
		return data
	})
}

func readAll(c *Codec, st storage.Store, key string) ([]byte, error) {
	rc, _, err := c.Open(context.Background(), st, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func encryptingCodec(t *testing.T) *Codec {
	t.Helper()
	walTestArchive(t, true) // makes walKey
	return &Codec{Compression: compress.Zstd, KeyID: "k1", PublicKey: &walKey.PublicKey,
		PrivateKeys: map[string]*rsa.PrivateKey{"k1": walKey}, RequireEncryption: true}
}

// In a site that encrypts, an object without encryption-key-id is refused
// as tampered, whatever its content: a writer without keys cannot plant
// plaintext WAL or backups.
func TestCodec_Open_ErrUnencrypted(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	c := encryptingCodec(t)
	plain := []byte("planted by someone without the key")
	keyless := &Codec{Compression: compress.Zstd}
	if _, err := keyless.Put(ctx, st, "site/xlog/planted", bytes.NewReader(plain), int64(len(plain)), nil); err != nil {
		t.Fatal(err)
	}
	_, err := readAll(c, st, "site/xlog/planted")
	var de *DecodeError
	if !errors.As(err, &de) || !errors.Is(err, ErrUnencrypted) {
		t.Fatalf("Open of an unencrypted object = %v, want a DecodeError wrapping ErrUnencrypted", err)
	}
	// Decode knows no storage time: refused even with a cutoff.
	c.UnencryptedBefore = time.Now().Add(time.Hour)
	if _, err := c.Decode("k", bytes.NewReader(nil), storage.Metadata{}); !errors.Is(err, ErrUnencrypted) {
		t.Errorf("Decode of an unencrypted object = %v, want ErrUnencrypted", err)
	}
	// Encrypted objects read as before.
	if _, err := c.Put(ctx, st, "site/xlog/ok", bytes.NewReader(plain), int64(len(plain)), nil); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(c, st, "site/xlog/ok"); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("encrypted object = %q, %v", got, err)
	}
	// Taking encryption-key-id away from an encrypted object is the same
	// downgrade.
	rewriteMetadata(t, st, "site/xlog/ok", func(md storage.Metadata) { delete(md, MetaEncryptionKeyID) })
	c.UnencryptedBefore = time.Time{}
	if _, err := readAll(c, st, "site/xlog/ok"); !errors.Is(err, ErrUnencrypted) {
		t.Errorf("Open after encryption-key-id was removed = %v, want ErrUnencrypted", err)
	}
	// A key the site does not know is refused too.
	rewriteMetadata(t, st, "site/xlog/ok", func(md storage.Metadata) { md[MetaEncryptionKeyID] = "attacker" })
	if _, err := readAll(c, st, "site/xlog/ok"); !errors.As(err, &de) {
		t.Errorf("Open with an unknown key id = %v, want a DecodeError", err)
	}
}

// unencrypted_objects_before admits unencrypted objects that the storage
// wrote before it, by the storage's own time: an object written after it
// stays refused even when its writer sets its file times into the past.
func TestCodec_Open_UnencryptedBefore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := storage.NewLocal(dir)
	keyless := &Codec{Compression: compress.Snappy}
	legacy := []byte("archived before encryption was switched on")
	if _, err := keyless.Put(ctx, st, "site/xlog/legacy", bytes.NewReader(legacy), int64(len(legacy)), nil); err != nil {
		t.Fatal(err)
	}
	// Change times have the file system's granularity: step past it.
	time.Sleep(20 * time.Millisecond)
	cutoff := time.Now()
	time.Sleep(20 * time.Millisecond)
	planted := []byte("planted after the switch")
	if _, err := keyless.Put(ctx, st, "site/xlog/planted", bytes.NewReader(planted), int64(len(planted)), nil); err != nil {
		t.Fatal(err)
	}
	past := cutoff.Add(-365 * 24 * time.Hour)
	for _, f := range []string{"planted", "planted.metadata"} {
		if err := os.Chtimes(filepath.Join(dir, "site", "xlog", f), past, past); err != nil {
			t.Fatal(err)
		}
	}
	c := encryptingCodec(t)
	c.UnencryptedBefore = cutoff
	if got, err := readAll(c, st, "site/xlog/legacy"); err != nil || !bytes.Equal(got, legacy) {
		t.Errorf("legacy object = %q, %v; want it read", got, err)
	}
	if _, err := readAll(c, st, "site/xlog/planted"); !errors.Is(err, ErrUnencrypted) {
		t.Errorf("object written after the cutoff (file times set back) = %v, want ErrUnencrypted", err)
	}
	// Rewriting a legacy object moves it past the cutoff.
	rewriteMetadata(t, st, "site/xlog/legacy", func(md storage.Metadata) { md["host"] = "attacker" })
	if _, err := readAll(c, st, "site/xlog/legacy"); !errors.Is(err, ErrUnencrypted) {
		t.Errorf("legacy object rewritten after the cutoff = %v, want ErrUnencrypted", err)
	}
}

// wal-fetch refuses a planted plaintext segment in a site that encrypts;
// it is an error, never "not in the archive".
func TestArchive_FetchWAL_ErrUnencrypted(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	a.Codec.RequireEncryption = true
	name := "000000010000000000000003"
	data := waltest.Segment(t, name, testSegSize, 3)
	keyless := &Codec{Compression: compress.Snappy}
	if _, err := keyless.Put(ctx, a.Store, a.Layout.WALKey(name), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	err := a.FetchWAL(ctx, name, filepath.Join(dir, "RECOVERYXLOG"), FetchOptions{})
	if !errors.Is(err, ErrUnencrypted) || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("FetchWAL of a plaintext segment = %v, want ErrUnencrypted", err)
	}
	if got := testio.DirNames(t, dir); len(got) != 0 {
		t.Fatalf("pg_wal holds %v after a refused fetch", got)
	}
}

// compression-algorithm is cross-checked against the content: changing or
// removing it is refused by name, for plain and encrypted objects, before
// any byte is passed on.
func TestCodec_Open_ErrCompressionMismatch(t *testing.T) {
	ctx := context.Background()
	plain := bytes.Repeat([]byte("hoard "), 10000)
	for _, encrypted := range []bool{false, true} {
		for _, alg := range compress.Algorithms {
			c := &Codec{Compression: alg}
			if encrypted {
				c = encryptingCodec(t)
				c.Compression = alg
			}
			for _, claim := range append([]string{compress.None}, compress.Algorithms...) {
				if claim == alg {
					continue
				}
				st := storage.NewMem()
				if _, err := c.Put(ctx, st, "k", bytes.NewReader(plain), int64(len(plain)), nil); err != nil {
					t.Fatal(err)
				}
				rewriteMetadata(t, st, "k", func(md storage.Metadata) {
					delete(md, MetaOriginalFileSize) // so that only the content can tell
					if claim == compress.None {
						delete(md, MetaCompressionAlgorithm)
					} else {
						md[MetaCompressionAlgorithm] = claim
					}
				})
				got, err := readAll(c, st, "k")
				if !errors.Is(err, ErrCompressionMismatch) || len(got) != 0 {
					t.Errorf("encrypted=%v %s object claimed as %q: read %d bytes, err %v; want nothing and ErrCompressionMismatch",
						encrypted, alg, claim, len(got), err)
				}
			}
		}
	}
}
