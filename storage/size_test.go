package storage

import (
	"context"
	"testing"
)

// A Put of bounded size gets S3 parts just large enough for 10,000 of them
// to hold it, at least S3's 5 MiB, so that a basebackup chunk holds about
// 15 MiB of parts instead of 768 MiB; an object of unknown size keeps the
// 256 MiB parts that carry 2.5 TiB; a bounded object of up to 32 MiB (a
// WAL segment) goes in one PUT; segment_size is kept as configured.
func TestS3Plan(t *testing.T) {
	for _, tc := range []struct {
		segment, max int64
		part         int
		single       bool
		memory       int64
	}{
		{0, -1, 256 * mib, false, 768 * mib},
		{0, 0, s3MinPart, true, 2},
		{0, 16<<20 + 1<<20, s3MinPart, true, 2 * (17 << 20)},
		{0, 32 * mib, s3MinPart, true, 64 * mib},
		{0, 32*mib + 1, 5 * mib, false, 15 * mib},
		{0, 256 * mib, 5 * mib, false, 15 * mib},
		{0, 2 << 30, 5 * mib, false, 15 * mib},
		{0, 10_000 * 5 * mib, 5 * mib, false, 15 * mib},
		{0, 10_000*5*mib + 1, 6 * mib, false, 18 * mib},
		{0, 5 << 40, 525 * mib, false, 3 * 525 * mib},
		{64 * mib, 256 * mib, 64 * mib, false, 192 * mib},
		{8 * mib, -1, 8 * mib, false, 32 * mib},
	} {
		p := s3Plan(tc.segment, tc.max)
		single := p.threshold > tc.max && tc.max >= 0
		if p.part != tc.part || single != tc.single || p.memory != tc.memory {
			t.Errorf("s3Plan(%d, %d) = %+v (one PUT %v), want part %d, one PUT %v, memory %d", tc.segment, tc.max, p, single, tc.part, tc.single, tc.memory)
		}
		if tc.max >= 0 && !single && int64(p.part)*s3MaxParts < tc.max {
			t.Errorf("s3Plan(%d, %d): 10,000 parts of %d bytes do not hold the object", tc.segment, tc.max, p.part)
		}
	}
}

// Azure: blocks just large enough for 50,000 to hold a bounded object, at
// least 4 MiB; one block for an object of up to 32 MiB; 64 MiB blocks for
// one of unknown size.
func TestAzurePlan(t *testing.T) {
	for _, tc := range []struct {
		segment, max int64
		part         int
		memory       int64
	}{
		{0, -1, 64 * mib, 128 * mib},
		{0, 0, mib, mib},
		{0, 17 * mib, 17 * mib, 17 * mib},
		{0, 32 * mib, 32 * mib, 32 * mib},
		{0, 256 * mib, 4 * mib, 8 * mib},
		{0, 50_000 * 4 * mib, 4 * mib, 8 * mib},
		{0, 50_000*4*mib + 1, 5 * mib, 10 * mib},
		{16 * mib, 256 * mib, 16 * mib, 32 * mib},
	} {
		p := azurePlan(tc.segment, tc.max)
		if p.part != tc.part || p.memory != tc.memory {
			t.Errorf("azurePlan(%d, %d) = %+v, want block %d, memory %d", tc.segment, tc.max, p, tc.part, tc.memory)
		}
		if tc.max >= 0 && int64(p.part)*azureMaxBlocks < tc.max {
			t.Errorf("azurePlan(%d, %d): 50,000 blocks of %d bytes do not hold the object", tc.segment, tc.max, p.part)
		}
	}
}

// UploadMemory sees through the retry and rate-limit wrappers that hoard's
// commands put around a store, and reads the bound WithMaxSize sets.
func TestUploadMemory(t *testing.T) {
	ctx := context.Background()
	s3, err := Open(ctx, Config{Type: "s3", Region: "us-east-1", BucketName: "b", Host: "127.0.0.1", Port: 9, AccessKeyID: "k", SecretAccessKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	st := WithRetry(WithRateLimit(s3, RateLimits{Upload: 1 << 20}), RetryOptions{})
	if got := UploadMemory(st, 256*mib); got != 15*mib {
		t.Errorf("S3, 256 MiB object: UploadMemory = %d, want %d", got, 15*mib)
	}
	if got := UploadMemory(st, -1); got != 768*mib {
		t.Errorf("S3, unknown size: UploadMemory = %d, want %d", got, 768*mib)
	}
	if got := UploadMemory(WithRetry(NewLocal(t.TempDir()), RetryOptions{}), 256*mib); got != localCopyBufferSize {
		t.Errorf("local: UploadMemory = %d, want its copy buffer, %d", got, localCopyBufferSize)
	}
	if got := MaxSize(WithMaxSize(ctx, 42)); got != 42 {
		t.Errorf("MaxSize = %d, want 42", got)
	}
	if got := MaxSize(ctx); got != -1 {
		t.Errorf("MaxSize without a bound = %d, want -1", got)
	}
}
