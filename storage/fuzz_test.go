package storage

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseSidecar feeds arbitrary bytes to the local store's sidecar
// parser: it must never panic, never return "_hash", and what it accepts
// must survive encodeSidecar and parse back the same.
func FuzzParseSidecar(f *testing.F) {
	f.Add([]byte(`{"_hash": "abc", "compression-algorithm": "snappy", "encryption-key-id": "5ba999de817c49a682ffed124abf9a2e", "format": "pghoard-bb-v2", "original-file-size": "20480"}`))
	f.Add([]byte(`{"a": null, "b": 1.5, "c": true, "d": "\u00e9"}`))
	f.Add([]byte(`{"a": {"b": 1}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"a": "x"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := parseSidecar(data)
		if err != nil {
			return
		}
		for _, k := range []string{hashKey, contentLengthKey} {
			if _, ok := md[k]; ok {
				t.Fatalf("parsed metadata holds %s", k)
			}
		}
		enc, err := encodeSidecar(md, []byte{1, 2}, 2)
		if err != nil {
			t.Fatalf("encode parsed metadata: %v", err)
		}
		again, err := parseSidecar(enc)
		if err != nil {
			t.Fatalf("parse encoded metadata %q: %v", enc, err)
		}
		// Empty values are dropped on write, as rohmu drops them.
		want := Metadata{}
		for k, v := range md {
			if v != "" {
				want[k] = v
			}
		}
		if diff := cmp.Diff(want, again); diff != "" {
			t.Fatalf("round trip (-parsed +again):\n%s", diff)
		}
	})
}
