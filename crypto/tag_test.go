package crypto

import (
	"bytes"
	"io"
	"testing"
)

// TestEnvelope_Tag: the Writer's and the Reader's Tag are the object's
// trailer, set only once it is written or verified; two objects of the same
// plaintext have different tags.
func TestEnvelope_Tag(t *testing.T) {
	k := key(t)
	plain := random(t, chunkLen+100)
	var buf bytes.Buffer
	w := NewWriter(&buf, &k.PublicKey)
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if w.Tag() != nil {
		t.Error("writer's tag before Close")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	obj := buf.Bytes()
	if got, want := w.Tag(), obj[len(obj)-tagLen:]; !bytes.Equal(got, want) {
		t.Errorf("writer's tag %x, trailer %x", got, want)
	}
	r := NewReader(bytes.NewReader(obj), k)
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if r.Tag() != nil {
		t.Error("reader's tag before EOF")
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Tag(), w.Tag()) {
		t.Errorf("reader's tag %x, writer's %x", r.Tag(), w.Tag())
	}
	if other := encrypt(t, &k.PublicKey, plain); bytes.Equal(other[len(other)-tagLen:], w.Tag()) {
		t.Error("two objects of the same plaintext share a tag")
	}
	bad := bytes.Clone(obj)
	bad[len(bad)-1] ^= 1
	r = NewReader(bytes.NewReader(bad), k)
	if _, err := io.Copy(io.Discard, r); err == nil || r.Tag() != nil {
		t.Errorf("altered object: %v, tag %x", err, r.Tag())
	}
}
