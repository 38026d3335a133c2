package crypto

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the envelope reader: it must never
// panic, and whatever is not an envelope made with the key must fail with
// ErrTampered. The key and the seeds are PGHoard's real test objects, so
// every fuzzing process agrees on which inputs are valid.
func FuzzReader(f *testing.F) {
	k := pghoardKey(f)
	seeds := map[string]bool{}
	paths, _ := filepath.Glob(filepath.Join(pghoardDir, "basebackup", "chunks", "*.pghoard"))
	for _, p := range paths {
		obj, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds[string(obj)] = true
		f.Add(obj)
		f.Add(obj[:len(obj)-1])
		f.Add(obj[:headerLen+k.Size()])
	}
	f.Add([]byte{})
	f.Add([]byte("pghoa1"))
	f.Add([]byte("pghoa1\x01\x80"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := io.ReadAll(NewReader(bytes.NewReader(data), k))
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("error not wrapping ErrTampered: %v", err)
			}
			return
		}
		if len(data) == 0 {
			if len(got) != 0 {
				t.Fatal("empty object decoded to bytes")
			}
			return
		}
		// Forging a tag takes the HMAC key: only PGHoard's own objects
		// may verify.
		if !seeds[string(data)] {
			t.Fatalf("%d-byte input that is not a real object verified", len(data))
		}
	})
}
