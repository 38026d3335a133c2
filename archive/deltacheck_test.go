package archive

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_CheckDeltaObject: an object under a file's digest passes
// only when it decodes to exactly the file's bytes; what a bucket writer
// without keys can plant there (garbage, a truncated or altered copy,
// another object of the site, a longer one) is a *DeltaObjectError, as is
// an object this configuration has no private key for; a missing object
// wraps storage.ErrNotFound.
func TestArchive_CheckDeltaObject(t *testing.T) {
	ctx := context.Background()
	a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
	file := []byte(strings.Repeat("hoard delta ", 10000))
	h := NewDeltaHash()
	h.Write(file)
	d := hex.EncodeToString(h.Sum(nil))
	key := a.Layout.DeltaKey(d)
	put := func(t *testing.T, plain []byte) {
		t.Helper()
		if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(plain), int64(len(plain)), storage.Metadata{MetaFormat: FormatDeltaV2}); err != nil {
			t.Fatal(err)
		}
	}
	edit := func(t *testing.T, f func(b []byte) []byte) {
		t.Helper()
		rc, o, err := a.Store.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, err = buf.ReadFrom(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Store.Put(ctx, key, bytes.NewReader(f(buf.Bytes())), o.Metadata); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("OK", func(t *testing.T) {
		put(t, file)
		o, err := a.CheckDeltaObject(ctx, d, int64(len(file)))
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := a.Store.Stat(ctx, key); o.Size != st.Size {
			t.Errorf("size %d, stored %d", o.Size, st.Size)
		}
	})
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T)
		want  error // wrapped too, when not nil
	}{
		{"ErrGarbage", func(t *testing.T) {
			put(t, file)
			edit(t, func([]byte) []byte { return []byte("garbage") })
		}, crypto.ErrTampered},
		{"ErrTruncated", func(t *testing.T) {
			put(t, file)
			edit(t, func(b []byte) []byte { return b[:len(b)/2] })
		}, crypto.ErrTampered},
		{"ErrAltered", func(t *testing.T) {
			put(t, file)
			edit(t, func(b []byte) []byte { b[len(b)/2] ^= 1; return b })
		}, crypto.ErrTampered},
		{"ErrOtherContent", func(t *testing.T) { put(t, bytes.ToUpper(file)) }, nil},
		{"ErrShorter", func(t *testing.T) { put(t, file[:len(file)-1]) }, nil},
		{"ErrLonger", func(t *testing.T) { put(t, append(bytes.Clone(file), 'x')) }, nil},
		{"ErrNoPrivateKey", func(t *testing.T) {
			put(t, file)
			c := *a.Codec
			c.PrivateKeys = nil
			a.Codec = &c
		}, ErrNoPrivateKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			codec := a.Codec
			t.Cleanup(func() { a.Codec = codec })
			tc.plant(t)
			_, err := a.CheckDeltaObject(ctx, d, int64(len(file)))
			var de *DeltaObjectError
			if !errors.As(err, &de) || de.Key != key || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("got %v, want a DeltaObjectError of %s wrapping %v", err, key, tc.want)
			}
		})
	}
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := a.CheckDeltaObject(ctx, digest('a'), 1)
		var de *DeltaObjectError
		if !errors.Is(err, storage.ErrNotFound) || errors.As(err, &de) {
			t.Errorf("got %v, want storage.ErrNotFound", err)
		}
	})
}
