package storage_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

func TestLocal_Conformance(t *testing.T) {
	c := storetest.Local(t)
	storetest.Run(t, func(t testing.TB) storage.Store { return storetest.Open(t, c) })
}

func TestMem_Conformance(t *testing.T) {
	storetest.Run(t, func(t testing.TB) storage.Store { return storetest.Open(t, storage.Config{Type: "mem"}) })
}

func TestNewMem_Conformance(t *testing.T) {
	storetest.Run(t, func(t testing.TB) storage.Store { return storage.NewMem() })
}

func TestURL_Conformance(t *testing.T) {
	storetest.Run(t, func(t testing.TB) storage.Store {
		return storetest.Open(t, storage.Config{URL: "mem://"})
	})
}

func TestMinIO_Conformance(t *testing.T) {
	c := storetest.MinIO(t)
	storetest.Run(t, func(t testing.TB) storage.Store { return storetest.Open(t, c) })
}

func TestAzurite_Conformance(t *testing.T) {
	c := storetest.Azurite(t)
	storetest.Run(t, func(t testing.TB) storage.Store { return storetest.Open(t, c) })
}

func TestFakeGCS_Conformance(t *testing.T) {
	c := storetest.FakeGCS(t)
	storetest.Run(t, func(t testing.TB) storage.Store { return storetest.Open(t, c) })
}

// An S3 multipart upload abandoned after several parts leaves no object and
// no unfinished upload (whose parts S3 would keep and bill).
func TestMinIO_AbortedMultipartLeavesNoParts(t *testing.T) {
	c := storetest.MinIO(t)
	st := storetest.Open(t, c)
	ctx := context.Background()
	boom := errors.New("boom")
	r := &failAfter{n: 22 << 20, err: boom}
	if err := st.Put(ctx, "site/basebackup/big", r, nil); !errors.Is(err, boom) {
		t.Fatalf("Put = %v, want the reader's error", err)
	}
	client := storetest.Client[*s3.Client](t, st)
	out, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(c.BucketName)})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d unfinished multipart uploads remain, first %s", len(out.Uploads), aws.ToString(out.Uploads[0].Key))
	}
	if err := st.List(ctx, "", func(o storage.Object) error { t.Errorf("listed %s", o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
}

// Metadata travels with PGHoard's spelling: raw values, lowercase keys.
func TestMinIO_MetadataOnTheWire(t *testing.T) {
	c := storetest.MinIO(t)
	c.Prefix = "pre"
	st := openT(t, c)
	ctx := context.Background()
	md := storage.Metadata{"compression-algorithm": "snappy", "end-time": "2019-07-10 14:33:12.657815+02:00", "Content-Length": "3"}
	if err := st.Put(ctx, "site/xlog/1", strings.NewReader("abc"), md); err != nil {
		t.Fatal(err)
	}
	client := storetest.Client[*s3.Client](t, st)
	out, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(c.BucketName), Key: aws.String("pre/site/xlog/1")})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	want := map[string]string{"compression-algorithm": "snappy", "end-time": "2019-07-10 14:33:12.657815+02:00", "content-length": "3"}
	for k, v := range want {
		if out.Metadata[k] != v {
			t.Errorf("x-amz-meta-%s = %q, want %q (all: %v)", k, out.Metadata[k], v, out.Metadata)
		}
	}
}

// Azure keys carry '_' for '-' on the wire and come back with '-'.
func TestAzurite_MetadataOnTheWire(t *testing.T) {
	c := storetest.Azurite(t)
	st := openT(t, c)
	ctx := context.Background()
	md := storage.Metadata{"compression-algorithm": "snappy", "end-time": "2019-07-10 14:33:12.657815+02:00"}
	if err := st.Put(ctx, "site/xlog/1", strings.NewReader("abc"), md); err != nil {
		t.Fatal(err)
	}
	client := storetest.Client[*container.Client](t, st)
	props, err := client.NewBlobClient("site/xlog/1").GetProperties(ctx, nil)
	if err != nil {
		t.Fatalf("GetProperties: %v", err)
	}
	got := map[string]string{}
	for k, v := range props.Metadata {
		got[strings.ToLower(k)] = *v
	}
	want := map[string]string{"compression_algorithm": "snappy", "end_time": "2019-07-10 14:33:12.657815+02:00"}
	if !cmp.Equal(got, want) {
		t.Errorf("blob metadata = %v, want %v", got, want)
	}
	o, err := st.Stat(ctx, "site/xlog/1")
	if err != nil || !cmp.Equal(o.Metadata, md) {
		t.Errorf("Stat metadata = %v (%v), want %v", o.Metadata, err, md)
	}
}

func TestMinIO_ErrPermanent(t *testing.T) {
	c := storetest.MinIO(t)
	bad := c
	bad.SecretAccessKey = "wrong-secret-value"
	checkOpsPermanent(t, openT(t, bad), "bad secret", "aws_access_key_id", bad.SecretAccessKey, "Put", "Stat")
	missing := c
	missing.BucketName = "no-such-bucket"
	checkOpsPermanent(t, openT(t, missing), "missing bucket", `"no-such-bucket" does not exist`, "", "Put", "Stat", "List")
}

func TestAzurite_ErrPermanent(t *testing.T) {
	c := storetest.Azurite(t)
	bad := c
	bad.AccountKey = "d3Jvbmcta2V5LXZhbHVlLWZvci10ZXN0aW5nLW9ubHk="
	checkOpsPermanent(t, openT(t, bad), "bad key", "account_key", bad.AccountKey, "Put")
	missing := c
	missing.BucketName = "no-such-container"
	checkOpsPermanent(t, openT(t, missing), "missing container", `"no-such-container" does not exist`, "", "Stat", "Put")
}

func TestFakeGCS_ErrPermanent(t *testing.T) {
	missing := storetest.FakeGCS(t)
	missing.BucketName = "no-such-bucket"
	checkOpsPermanent(t, openT(t, missing), "missing bucket", `"no-such-bucket" does not exist`, "", "Stat")
}

// checkOpsPermanent runs each of ops (Put, Stat or List, in the order given) on
// st and checks its error with checkPermanent.
func checkOpsPermanent(t *testing.T, st storage.Store, what, wantText, secret string, ops ...string) {
	t.Helper()
	ctx := context.Background()
	for _, op := range ops {
		var err error
		switch op {
		case "Put":
			err = st.Put(ctx, "k", strings.NewReader("x"), nil)
		case "Stat":
			_, err = st.Stat(ctx, "k")
		case "List":
			err = st.List(ctx, "", func(storage.Object) error { return nil })
		default:
			t.Fatalf("checkOpsPermanent: unknown op %q", op)
		}
		checkPermanent(t, what+": "+op, err, wantText, secret)
	}
}

func checkPermanent(t *testing.T, what string, err error, wantText, secret string) {
	t.Helper()
	if !errors.Is(err, storage.ErrPermanent) {
		t.Errorf("%s: %v, want ErrPermanent", what, err)
		return
	}
	if storage.IsTransient(err) {
		t.Errorf("%s: IsTransient(%v) = true", what, err)
	}
	if !strings.Contains(err.Error(), wantText) {
		t.Errorf("%s: %q does not say %q", what, err, wantText)
	}
	if secret != "" && strings.Contains(err.Error(), secret) {
		t.Errorf("%s: error shows the secret: %q", what, err)
	}
}

// putBounded puts data at key, telling Put its largest size
// (storage.WithMaxSize) unless maxSize is -1.
func putBounded(t *testing.T, st storage.Store, key string, maxSize int64, data []byte) {
	t.Helper()
	ctx := context.Background()
	if maxSize >= 0 {
		ctx = storage.WithMaxSize(ctx, maxSize)
	}
	if err := st.Put(ctx, key, bytes.NewReader(data), nil); err != nil {
		t.Fatalf("%s: Put: %v", key, err)
	}
}

func openT(t *testing.T, c storage.Config) storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), c)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// failAfter yields n bytes and then err.
type failAfter struct {
	n   int64
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	k := min(int64(len(p)), f.n)
	for i := range p[:k] {
		p[i] = byte(f.n - int64(i))
	}
	f.n -= k
	return int(k), nil
}

// A Put told its object's largest size (storage.WithMaxSize) uploads in
// parts sized for it: a bounded 12 MiB object goes in 5 MiB parts (the
// multipart ETag counts them), where without the bound the transfer
// manager would send it in one PUT after holding it whole, and with it
// hold three 256 MiB parts for a larger one. A bounded object of up to
// 32 MiB (a WAL segment) goes in one PUT even past the SDK's 16 MiB
// threshold. The bytes come back as written.
func TestMinIO_BoundedPutParts(t *testing.T) {
	c := storetest.MinIO(t)
	c.SegmentSize = 0 // hoard's own choice, not the conformance suite's small parts
	st := openT(t, c)
	client := storetest.Client[*s3.Client](t, st)
	bg := context.Background()
	for _, tc := range []struct {
		key      string
		size     int
		maxSize  int64 // -1: no bound
		wantETag string
	}{
		{"chunk", 12 << 20, 256 << 20, "-3"},
		{"unbounded", 12 << 20, -1, ""},
		{"wal", 20 << 20, 20 << 20, ""},
	} {
		data := make([]byte, tc.size)
		for i := range data {
			data[i] = byte(i*7 + i>>11)
		}
		putBounded(t, st, "site/"+tc.key, tc.maxSize, data)
		out, err := client.HeadObject(bg, &s3.HeadObjectInput{Bucket: aws.String(c.BucketName), Key: aws.String("site/" + tc.key)})
		if err != nil {
			t.Fatalf("%s: HeadObject: %v", tc.key, err)
		}
		etag := strings.Trim(aws.ToString(out.ETag), `"`)
		_, parts, multipart := strings.Cut(etag, "-")
		switch {
		case tc.wantETag == "" && multipart:
			t.Errorf("%s: ETag %s: a multipart upload, want one PUT", tc.key, etag)
		case tc.wantETag != "" && "-"+parts != tc.wantETag:
			t.Errorf("%s: ETag %s, want parts %s", tc.key, etag, tc.wantETag)
		}
		if got, _ := storetest.Read(t, st, "site/"+tc.key); !bytes.Equal(got, data) {
			t.Errorf("%s: read back %d bytes, want the %d written", tc.key, len(got), len(data))
		}
	}
}

// Azure: a bounded 12 MiB object goes up in 4 MiB blocks, two at a time,
// where an object of unknown size has 64 MiB blocks (two held per Put);
// one that fits its first block, as a bounded object of up to 32 MiB (a
// WAL segment) does, goes up in one Put Blob, without blocks.
func TestAzurite_BoundedPutBlocks(t *testing.T) {
	c := storetest.Azurite(t)
	c.SegmentSize = 0 // hoard's own choice, not the conformance suite's small blocks
	st := openT(t, c)
	client := storetest.Client[*container.Client](t, st)
	bg := context.Background()
	for _, tc := range []struct {
		key     string
		maxSize int64
		blocks  int
	}{
		{"chunk", 256 << 20, 3},
		{"unbounded", -1, 0},
		{"wal", 20 << 20, 0},
	} {
		putBounded(t, st, "site/"+tc.key, tc.maxSize, bytes.Repeat([]byte("0123456789abcdef"), 12<<20/16))
		bl, err := client.NewBlockBlobClient("site/"+tc.key).GetBlockList(bg, blockblob.BlockListTypeCommitted, nil)
		if err != nil {
			t.Fatalf("%s: GetBlockList: %v", tc.key, err)
		}
		if len(bl.CommittedBlocks) != tc.blocks {
			t.Errorf("%s: %d committed blocks, want %d", tc.key, len(bl.CommittedBlocks), tc.blocks)
		}
	}
}
