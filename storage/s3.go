package storage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob/s3blob"
)

// s3PartSize is the multipart part size of an object of unknown size. S3
// allows 10,000 parts, so 256 MiB parts carry objects up to 2.5 TiB; a Put
// holds the first part and a pool of two more (one being sent, one being
// filled), about 768 MiB. Objects of bounded size (storage.WithMaxSize: a
// basebackup chunk, a WAL segment) get parts of their own (s3Plan).
// segment_size overrides it.
const s3PartSize = 256 * mib

// S3AddressingStyles are the addressing_style values: path (PGHoard's
// default), virtual, or auto (path for a custom host, else virtual).
var S3AddressingStyles = []string{"path", "virtual", "auto"}

// S3's limits on multipart uploads: the smallest part but the last, and
// the most parts.
const (
	s3MinPart  = 5 * mib
	s3MaxParts = 10_000
)

// s3DefaultThreshold is the transfer manager's own: an object shorter than
// this goes in one PUT.
const s3DefaultThreshold = 16 * mib

// s3Plan chooses the part size and the one-PUT threshold of an upload of at
// most maxSize bytes (< 0: unknown) and says what memory the transfer
// manager then holds. It reads the first part whole (io.ReadAll, up to
// twice its size while it grows), then takes a pool of two more parts for
// the rest, so a multipart upload holds about three parts.
//
//   - segment_size set: its parts, as configured.
//   - unknown size: 256 MiB parts (objects up to 2.5 TiB).
//   - at most singleRequestMax (a WAL segment): one PUT, whatever the
//     compression made of it.
//   - larger: the smallest whole-MiB part, at least 5 MiB, with which
//     10,000 parts hold maxSize; anything longer than one part is a
//     multipart upload, so no larger first read is held.
func s3Plan(segmentSize, maxSize int64) writePlan {
	multipart := func(part, threshold int64) writePlan {
		return writePlan{part: int(part), threshold: threshold, memory: max(part, threshold) + 2*part}
	}
	switch {
	case segmentSize > 0:
		return multipart(segmentSize, s3DefaultThreshold)
	case maxSize < 0:
		return multipart(s3PartSize, s3DefaultThreshold)
	case maxSize <= singleRequestMax:
		// The threshold is past maxSize: one PUT of a body read whole.
		return writePlan{part: s3MinPart, threshold: maxSize + 1, memory: 2 * max(maxSize, 1)}
	}
	part := max(s3MinPart, ceilMiB((maxSize+s3MaxParts-1)/s3MaxParts))
	return multipart(part, part)
}

// openS3 builds an aws-sdk-go-v2 S3 client by hand from c, so that PGHoard's
// settings (custom endpoint, path addressing, TLS, static keys) apply, and
// opens the bucket with s3blob.
func openS3(ctx context.Context, c Config) (*Bucket, error) {
	httpClient, err := s3HTTPClient(c)
	if err != nil {
		return nil, err
	}
	loadOpts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(c.Region),
		awsconfig.WithHTTPClient(httpClient),
	}
	if c.AccessKeyID != "" {
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("open s3 storage: load aws config: %w", err)
	}
	custom := c.Host != ""
	checksum := aws.RequestChecksumCalculationWhenSupported
	if custom {
		// S3-compatible servers (Ceph, older MinIO) reject the newer
		// checksum headers; send them only when an operation requires them.
		checksum = aws.RequestChecksumCalculationWhenRequired
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if custom {
			o.BaseEndpoint = aws.String(endpoint(c))
		}
		switch c.AddressingStyle {
		case "virtual":
			o.UsePathStyle = false
		case "auto":
			o.UsePathStyle = custom
		default: // PGHoard's default is path
			o.UsePathStyle = true
		}
		o.RequestChecksumCalculation = checksum
		if custom {
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			o.DisableLogOutputChecksumValidationSkipped = true
		}
	})
	opts := &s3blob.Options{RequestChecksumCalculation: checksum}
	if c.Encrypted {
		opts.EncryptionType = types.ServerSideEncryptionAes256
	}
	bb, err := s3blob.OpenBucket(ctx, client, c.BucketName, opts)
	if err != nil {
		return nil, fmt.Errorf("open s3 bucket %s: %w", c.BucketName, err)
	}
	b := newBucket(bb, "s3", c.BucketName, c.Prefix)
	if custom {
		b.endpoint = endpoint(c)
	}
	b.partSize = partSize(c, s3PartSize)
	b.concurrency = 1
	b.planFor = func(maxSize int64) writePlan { return s3Plan(c.SegmentSize, maxSize) }
	b.rawMetadata = s3RawMetadata
	b.tune = func(p writePlan) func(func(any) bool) error { return s3Tune(client, checksum, p) }
	b.afterAbort = func(ctx context.Context, key string) { abortUploads(ctx, client, c.BucketName, key) }
	b.secrets = []string{c.SecretAccessKey, c.SessionToken}
	return b, nil
}

// s3HTTPClient applies is_verify_tls and cert_path.
func s3HTTPClient(c Config) (*awshttp.BuildableClient, error) {
	var tlsErr error
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.DialContext = stallDial(t.DialContext)
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if c.IsVerifyTLS != nil && !*c.IsVerifyTLS {
			t.TLSClientConfig.InsecureSkipVerify = true // the user's explicit is_verify_tls=false
		}
		if c.CertPath != "" {
			pem, err := os.ReadFile(c.CertPath)
			if err != nil {
				tlsErr = fmt.Errorf("open s3 storage: read cert_path: %w", err)
				return
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				tlsErr = fmt.Errorf("open s3 storage: cert_path %s holds no PEM certificate", c.CertPath)
				return
			}
			t.TLSClientConfig.RootCAs = pool
		}
	})
	// The transport options run when the client is first built; build it
	// now so that a bad cert_path is reported by Open.
	hc.GetTransport()
	if tlsErr != nil {
		return nil, tlsErr
	}
	return hc, nil
}

// s3Tune gives the upload a transfer manager with p's part size and
// one-PUT threshold, which gocloud's WriterOptions cannot set: gocloud hands
// its own manager to BeforeWrite for this ("applications can manipulate the
// exposed *Client directly"), and the settings it gave that manager (part
// size, concurrency, checksums) are given again here.
func s3Tune(client *s3.Client, checksum aws.RequestChecksumCalculation, p writePlan) func(func(any) bool) error {
	return func(as func(any) bool) error {
		var tm *transfermanager.Client
		if !as(&tm) {
			return nil
		}
		*tm = *transfermanager.New(client, func(o *transfermanager.Options) {
			o.RequestChecksumCalculation = checksum
			o.PartSizeBytes = int64(p.part)
			o.Concurrency = 1
			if p.threshold > 0 {
				o.MultipartUploadThreshold = p.threshold
			}
		})
		return nil
	}
}

// s3RawMetadata writes metadata as PGHoard does (x-amz-meta-<key>: <value>)
// instead of gocloud's URL-escaped form, for every entry that can travel
// unchanged; gocloud's unescaping on read leaves such values alone.
func s3RawMetadata(md map[string]string) func(func(any) bool) error {
	return rawMetadata(md, safeS3Key, func(in *transfermanager.UploadObjectInput, k, v string) { in.Metadata[k] = v })
}

// safeS3Key reports whether gocloud would store k unescaped.
func safeS3Key(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return k != ""
}

// abortUploads aborts unfinished multipart uploads of key. The SDK's upload
// manager aborts with the upload's own context, which is already cancelled
// when hoard abandons a Put, so the parts would otherwise stay (invisible,
// but billed) until a lifecycle rule removes them. Uploads of the same key
// by another writer at the same moment would be aborted too; hoard never
// writes one key from two places at once.
func abortUploads(ctx context.Context, client *s3.Client, bucket, key string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{
		Bucket: aws.String(bucket),
		Prefix: aws.String(key),
	})
	if err != nil {
		return // best effort: the Put has already failed with its own error
	}
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) != key {
			continue
		}
		_, _ = client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket:   aws.String(bucket),
			Key:      u.Key,
			UploadId: u.UploadId,
		})
	}
}
