package storage

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"gocloud.dev/blob/azureblob"
)

// azureBlockSize is the block size of an object of unknown size. Azure
// allows 50,000 blocks per blob, so 64 MiB blocks carry objects up to
// 3.2 TB; with two blocks in flight a Put holds about 128 MiB. Objects of
// bounded size (storage.WithMaxSize) get blocks of their own (azurePlan).
// segment_size overrides it.
const azureBlockSize = 64 * mib

// Azure's block count limit, the smallest block azurePlan chooses for a
// large object, and the blocks a Put sends at once.
const (
	azureMaxBlocks   = 50_000
	azureMinBlock    = 4 * mib
	azureConcurrency = 2
)

// azurePlan chooses the block size of an upload of at most maxSize bytes
// (< 0: unknown). The SDK's UploadStream fills up to azureConcurrency
// blocks at once, so that is what a Put holds.
//
//   - segment_size set: its blocks, as configured.
//   - unknown size: 64 MiB blocks (objects up to 3.2 TB).
//   - at most singleRequestMax (a WAL segment): one block.
//   - larger: the smallest whole-MiB block, at least 4 MiB, with which
//     50,000 blocks hold maxSize.
func azurePlan(segmentSize, maxSize int64) writePlan {
	blocks := func(block int64) writePlan {
		return writePlan{part: int(block), memory: azureConcurrency * block}
	}
	switch {
	case segmentSize > 0:
		return blocks(segmentSize)
	case maxSize < 0:
		return blocks(azureBlockSize)
	case maxSize <= singleRequestMax:
		block := max(ceilMiB(maxSize), mib)
		return writePlan{part: int(block), memory: block}
	}
	return blocks(max(azureMinBlock, ceilMiB((maxSize+azureMaxBlocks-1)/azureMaxBlocks)))
}

// AzureClouds are the azure_cloud values: PGHoard's public (the default),
// germany and china, and usgov.
var AzureClouds = []string{"public", "germany", "china", "usgov"}

// azureSuffixes maps each of AzureClouds to its blob endpoint suffix.
var azureSuffixes = map[string]string{
	"public":  "blob.core.windows.net",
	"germany": "blob.core.cloudapi.de",
	"china":   "blob.core.chinacloudapi.cn",
	"usgov":   "blob.core.usgovcloudapi.net",
}

// openAzure opens a container (bucket_name) of account_name with the
// account key, a SAS token, or the default Azure identity. host, port and
// is_secure point it at Azurite, whose URLs carry the account in the path.
func openAzure(ctx context.Context, c Config) (*Bucket, error) {
	serviceURL, err := azureServiceURL(c)
	if err != nil {
		return nil, err
	}
	containerURL := serviceURL + "/" + c.BucketName
	var client *container.Client
	switch {
	case c.AccountKey != "":
		var cred *azblob.SharedKeyCredential
		cred, err = azblob.NewSharedKeyCredential(c.AccountName, c.AccountKey)
		if err != nil {
			// The SDK's message does not echo the key.
			return nil, fmt.Errorf("open azure storage: account_key: %w", err)
		}
		client, err = container.NewClientWithSharedKeyCredential(containerURL, cred, azureClientOptions())
	case c.SASToken != "":
		client, err = container.NewClientWithNoCredential(containerURL+"?"+strings.TrimPrefix(c.SASToken, "?"), azureClientOptions())
	default:
		cred, cerr := azidentity.NewDefaultAzureCredential(nil)
		if cerr != nil {
			return nil, fmt.Errorf("open azure storage: no account_key or sas_token, and no default azure identity: %w", cerr)
		}
		client, err = container.NewClient(containerURL, cred, azureClientOptions())
	}
	if err != nil {
		return nil, fmt.Errorf("open azure container %s: %w", c.BucketName, &redactedError{err: err, secrets: []string{c.SASToken, c.AccountKey}})
	}
	bb, err := azureblob.OpenBucket(ctx, client, nil)
	if err != nil {
		return nil, fmt.Errorf("open azure container %s: %w", c.BucketName, err)
	}
	b := newBucket(bb, "azure", c.BucketName, c.Prefix)
	b.endpoint = serviceURL
	b.partSize = partSize(c, azureBlockSize)
	b.concurrency = azureConcurrency
	b.planFor = func(maxSize int64) writePlan { return azurePlan(c.SegmentSize, maxSize) }
	b.rawMetadata = azureRawMetadata
	b.secrets = []string{c.AccountKey, strings.TrimPrefix(c.SASToken, "?")}
	return b, nil
}

// azureServiceURL is the blob service URL of c's account: at host and
// port the account in the path (Azurite's form), else
// https://<account>.<azure_cloud's suffix>.
func azureServiceURL(c Config) (string, error) {
	if c.Host != "" {
		return endpoint(c) + "/" + c.AccountName, nil
	}
	suffix, ok := azureSuffixes[cmp.Or(c.AzureCloud, "public")]
	if !ok {
		return "", fmt.Errorf("open azure storage: unknown azure_cloud %q (want %s)", c.AzureCloud, strings.Join(AzureClouds, ", "))
	}
	return "https://" + c.AccountName + "." + suffix, nil
}

// azureRawMetadata stores values unescaped, as PGHoard does, where they can
// travel unchanged. Keys already have '_' for '-'; gocloud leaves C#
// identifiers as they are.
func azureRawMetadata(md map[string]string) func(func(any) bool) error {
	return rawMetadata(md, safeAzureKey, func(opts *azblob.UploadStreamOptions, k, v string) { opts.Metadata[k] = &v })
}

// safeAzureKey reports whether gocloud would store k unescaped.
func safeAzureKey(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= '0' && c <= '9' && i > 0) {
			return false
		}
	}
	return k != ""
}

// azureClientOptions gives the SDK a transport whose connections fail when
// they stall (see StallTimeout).
func azureClientOptions() *container.ClientOptions {
	o := &container.ClientOptions{}
	o.Transport = &http.Client{Transport: stallTransport()}
	return o
}
