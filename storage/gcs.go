package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	"cloud.google.com/go/storage"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/gcp"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"
)

// gcsChunkSize is the default resumable-upload chunk: the GCS client buffers
// one chunk per Put. GCS has no part-count limit, so it does not bound the
// object size.
const gcsChunkSize = 16 * mib

// gcsAttempts is how many times the Google client tries a request, or
// reopens a download that failed in the middle, before it gives up.
const gcsAttempts = 5

// openGCS opens a Google Cloud Storage bucket. With STORAGE_EMULATOR_HOST set
// (fake-gcs-server) it talks plain HTTP to the emulator and needs no
// credentials. Otherwise it uses credential_file, inline credentials or the
// default Google credentials.
func openGCS(ctx context.Context, c Config) (*Bucket, error) {
	var opts []option.ClientOption
	host := os.Getenv("STORAGE_EMULATOR_HOST")
	if host != "" {
		// As gcsblob talks to an emulator, but through a transport that
		// gives up on stalled connections (gcsblob's own uses Go's default).
		opts = []option.ClientOption{
			option.WithoutAuthentication(),
			option.WithEndpoint("http://" + host + "/storage/v1/"),
			option.WithHTTPClient(&http.Client{Transport: stallTransport()}),
		}
	} else {
		creds, err := gcsCredentials(ctx, c)
		if err != nil {
			return nil, err
		}
		client, err := gcp.NewHTTPClient(stallTransport(), gcp.CredentialsTokenSource(creds))
		if err != nil {
			return nil, fmt.Errorf("open google storage: %w", err)
		}
		opts = []option.ClientOption{option.WithHTTPClient(&client.Client)}
	}
	sc, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("open google storage: %w", err)
	}
	// The client retries a failed request, and a download cut or stalled
	// in the middle, until the operation's context ends: with none (a
	// wal-fetch), for ever. Bounded, it gives up as the other backends do.
	sc.SetRetry(storage.WithMaxAttempts(gcsAttempts))
	bb, err := gcsblob.OpenBucket(ctx, nil, c.BucketName, &gcsblob.Options{Client: sc})
	if err != nil {
		return nil, fmt.Errorf("open google bucket %s: %w", c.BucketName, err)
	}
	b := newBucket(bb, "google", c.BucketName, c.Prefix)
	if host != "" {
		b.endpoint = "http://" + host
	}
	b.partSize = partSize(c, gcsChunkSize)
	b.planFor = func(int64) writePlan { return writePlan{part: b.partSize, memory: int64(b.partSize)} }
	return b, nil
}

// gcsCredentials loads credentials from CredentialsJSON, CredentialFile or
// the environment's defaults. The JSON's "type" must be one PGHoard accepts:
// a service account or an authorized user.
func gcsCredentials(ctx context.Context, c Config) (*google.Credentials, error) {
	data := c.CredentialsJSON
	if len(data) == 0 && c.CredentialFile != "" {
		var err error
		if data, err = os.ReadFile(c.CredentialFile); err != nil {
			return nil, fmt.Errorf("open google storage: read credential_file: %w", err)
		}
	}
	if len(data) == 0 {
		creds, err := google.FindDefaultCredentials(ctx, storage.ScopeReadWrite)
		if err != nil {
			return nil, fmt.Errorf("open google storage: no credential_file and no default credentials: %w", err)
		}
		return creds, nil
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("open google storage: credentials are not JSON: %w", err)
	}
	var typ google.CredentialsType
	switch head.Type {
	case string(google.ServiceAccount):
		typ = google.ServiceAccount
	case string(google.AuthorizedUser):
		typ = google.AuthorizedUser
	default:
		return nil, fmt.Errorf("open google storage: credentials of type %q are not supported (want service_account or authorized_user)", head.Type)
	}
	creds, err := google.CredentialsFromJSONWithType(ctx, data, typ, storage.ScopeReadWrite)
	if err != nil {
		return nil, fmt.Errorf("open google storage: parse credentials: %w", err)
	}
	return creds, nil
}
