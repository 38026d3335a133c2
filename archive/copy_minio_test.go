package archive

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestCopy_MinIOCutMidWrite copies into a real MinIO whose connections
// are cut again and again mid-transfer (a target that fails halfway,
// multipart uploads among them): every object the target then holds under
// a final name is the source's, byte for byte with its metadata; every
// object not stored is listed as failed by its key; a backup with a
// failed chunk gets no control object. A second run with the network
// sound copies the rest and the target ends identical to the source.
func TestCopy_MinIOCutMidWrite(t *testing.T) {
	ctx := context.Background()
	src, _ := copySource(t)
	// A segment and a chunk large enough for multipart uploads (5 MiB
	// parts), incompressible.
	r := rand.New(rand.NewPCG(1, 2))
	for _, k := range []string{"src/xlog/000000010000000000000003", "src/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000002.pghoard"} {
		big := make([]byte, 7<<20)
		for i := range big {
			big[i] = byte(r.Uint32())
		}
		if _, err := src.Codec.Put(ctx, src.Store, k, bytes.NewReader(big), int64(len(big)), storage.Metadata{"format": "pghoard-bb-v2"}); err != nil {
			t.Fatal(err)
		}
	}
	c := storetest.MinIO(t)
	c.Prefix = "copy"
	pc, proxy := storetest.Proxied(t, c)
	direct, err := storage.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	cut, err := storage.Open(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer cut.Close()
	dst := &Archive{Store: cut, Codec: &Codec{}, Layout: Layout{Prefix: "dst"}, Site: "dst"}

	want := map[string]string{}
	wantMD := map[string]storage.Metadata{}
	for k, v := range storedBytes(t, src.Store, "") {
		tk := "dst/" + k[len("src/"):]
		want[tk] = v
		_, o := storetest.Read(t, src.Store, k)
		wantMD[tk] = o.Metadata
	}

	proxy.CutEvery(3<<20, 1000)
	res, err := Copy(ctx, CopyOptions{From: src, To: dst, Parallel: 2, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) == 0 {
		t.Fatalf("Copy through a network cut every 3 MiB: %+v, want failures", res)
	}
	failed := map[string]bool{}
	for _, f := range res.Failed {
		failed["dst/"+f.Key[len("src/"):]] = true
		if f.Err == nil || f.Err.Error() == "" {
			t.Errorf("failure of %s has no reason", f.Key)
		}
	}
	proxy.CutAfter(0)
	got := storedBytes(t, direct, "")
	for k, v := range got {
		if v != want[k] {
			t.Errorf("target holds %s (%d bytes) that is not the source's (%d bytes)", k, len(v), len(want[k]))
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok && !failed[k] {
			t.Errorf("%s is neither in the target nor listed as failed", k)
		}
	}
	const control = "dst/basebackup/2024-01-02_10-00_0.00000000.pghoard"
	if _, ok := got[control]; ok && failed["dst/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000002.pghoard"] {
		t.Errorf("%s is in the target though its chunk failed", control)
	}
	t.Logf("first run: %d copied, %d failed, %d cuts", res.Copied, len(res.Failed), proxy.Cuts())
	for _, f := range res.Failed {
		t.Logf("  failed %s: %v", f.Key, f.Err)
	}

	res, err = Copy(ctx, CopyOptions{From: src, To: dst, Parallel: 2, VerifyExisting: true, Logger: zerolog.Nop()})
	if err != nil || len(res.Failed)+len(res.Conflicts) != 0 {
		t.Fatalf("second Copy = %+v, %v; want everything copied", res, err)
	}
	if diff := cmp.Diff(want, storedBytes(t, direct, "")); diff != "" {
		t.Errorf("target after the second run (-want +got):\n%s", diff)
	}
	for k, md := range wantMD {
		if _, o := storetest.Read(t, direct, k); !sameMetadata(o.Metadata, md) {
			t.Errorf("%s metadata %v, want %v", k, o.Metadata, md)
		}
	}
}
