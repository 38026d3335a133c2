package storage

import "context"

// maxSizeKey is the context key of WithMaxSize.
type maxSizeKey struct{}

// WithMaxSize returns a context telling Put and Create that the object
// they store is at most n bytes (the bytes they read from their source).
// Object stores size their upload buffers from it: S3 and Azure choose
// parts just large enough for their part-count limit to hold n bytes,
// instead of the parts an object of unknown size needs. It is a promise,
// not a check: an object larger than n can fail to store (S3: more than
// 10,000 parts), and is then not stored at all, as any failed Put.
func WithMaxSize(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, maxSizeKey{}, max(n, 0))
}

// MaxSize returns the bound WithMaxSize put in ctx, or -1.
func MaxSize(ctx context.Context) int64 {
	if n, ok := ctx.Value(maxSizeKey{}).(int64); ok {
		return n
	}
	return -1
}

// uploadMemorer is implemented by stores whose Put holds buffers of its own.
type uploadMemorer interface {
	uploadMemory(maxSize int64) int64
}

// UploadMemory returns the memory one Put or Create into st holds in the
// store's own buffers, at most, for an object of at most maxSize bytes
// (maxSize < 0: unknown, as without WithMaxSize): S3's parts, Azure's
// blocks, GCS's chunk, Swift's read-ahead, a local store's copy buffer.
// SFTP streams and holds nothing to speak of (0). Callers that run many
// uploads at once count it in their memory budget.
func UploadMemory(st Store, maxSize int64) int64 {
	if m, ok := st.(uploadMemorer); ok {
		return m.uploadMemory(maxSize)
	}
	return 0
}

func (r *rateStore) uploadMemory(maxSize int64) int64  { return UploadMemory(r.Store, maxSize) }
func (r *retryStore) uploadMemory(maxSize int64) int64 { return UploadMemory(r.s, maxSize) }

// uploadMemory is a local store's copy buffer.
func (l *Local) uploadMemory(int64) int64 { return localCopyBufferSize }

// uploadMemory is Swift's read-ahead: a Put holds at most that much.
func (s *Swift) uploadMemory(int64) int64 { return int64(s.readAhead) }

// writePlan is how a Bucket's Put buffers an object.
type writePlan struct {
	part      int   // WriterOptions.BufferSize: S3's part, Azure's block, GCS's chunk
	threshold int64 // S3: objects shorter than this go in one PUT; 0 for the SDK's default
	memory    int64 // the buffers the Put holds at most
}

// plan returns the writePlan of a Put of at most maxSize bytes (< 0:
// unknown).
func (b *Bucket) plan(maxSize int64) writePlan {
	if b.planFor != nil {
		return b.planFor(maxSize)
	}
	return writePlan{part: b.partSize}
}

func (b *Bucket) uploadMemory(maxSize int64) int64 { return b.plan(maxSize).memory }

// ceilMiB rounds n up to whole MiB.
func ceilMiB(n int64) int64 { return (n + mib - 1) / mib * mib }

// singleRequestMax is the largest object S3 and Azure plans send in one
// request when its size is bounded (a WAL segment, a small chunk): the
// request's body is then held whole, as a part would be.
const singleRequestMax = 32 * mib
