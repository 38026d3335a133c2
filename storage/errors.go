package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"
)

// ErrPermanent marks errors that retrying cannot fix: bad credentials, a
// missing bucket or container, permission denied. The wrapping error says
// what to check. Test with errors.Is; WithRetry never retries them.
var ErrPermanent = errors.New("permanent storage error")

// ErrBadMetadata marks an object whose metadata is stored but cannot be
// read (a local store's sidecar that is not a JSON object): the object is
// damaged, not missing, and retrying cannot help.
var ErrBadMetadata = errors.New("unreadable object metadata")

// ErrChecksum marks a download whose bytes do not match the checksum the
// store keeps for the object (Swift's ETag, the MD5 of what was stored):
// the stored object is damaged or was altered, and reading it again
// gives the same bytes, so it is not retried.
var ErrChecksum = errors.New("the bytes read do not match the object's stored checksum")

// ErrObjectDamaged marks an object a local store holds in a state no
// writer leaves, found when it is read: its metadata sidecar without its
// object file (a disk that lost it), an object file that is a symbolic
// link or not a regular file (planted by someone who can write the
// storage directory). Like ErrBadMetadata and ErrNotFound, it says what
// is stored, not that the store failed to answer: a check of a backup
// takes it for damage (archive.IsDamage). It is not retried.
var ErrObjectDamaged = errors.New("stored object damaged")

// IsTransient reports whether err may go away if the operation is tried
// again: it is not nil, not ErrNotFound, ErrExist, ErrPermanent,
// ErrBadMetadata, ErrObjectDamaged or ErrChecksum, and not a context
// cancellation or deadline.
func IsTransient(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, ErrNotFound),
		errors.Is(err, ErrExist),
		errors.Is(err, ErrPermanent),
		errors.Is(err, ErrBadMetadata),
		errors.Is(err, ErrObjectDamaged),
		errors.Is(err, ErrChecksum),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return true
}

// permanentError is an ErrPermanent with an actionable message; with
// damaged, also an ErrObjectDamaged.
type permanentError struct {
	msg     string
	err     error
	damaged bool
}

func (e *permanentError) Error() string { return e.msg + ": " + e.err.Error() }

func (e *permanentError) Unwrap() []error {
	if e.damaged {
		return []error{ErrPermanent, ErrObjectDamaged, e.err}
	}
	return []error{ErrPermanent, e.err}
}

// redactedError hides secrets that a backend might echo back (an Azure SAS
// token in a request URL, for one) while keeping the error chain intact.
type redactedError struct {
	err     error
	secrets []string
}

// sasSignature matches the signature of an Azure SAS token in a URL's
// query: the secret part of the token. An error quotes the token as the
// SDK sent it, its pairs sorted and escaped again (Go's transport puts the
// whole request URL in a *url.Error), not as configured, so the
// configured token alone is not found in the message.
var sasSignature = regexp.MustCompile(`([?&]sig=)[^&"'\s]+`)

func (e *redactedError) Error() string {
	s := e.err.Error()
	for _, secret := range e.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "REDACTED")
		}
	}
	return sasSignature.ReplaceAllString(s, "${1}REDACTED")
}

func (e *redactedError) Unwrap() error { return e.err }

// accessDenied reports whether err is a backend's refusal of the credentials
// or of the permission, rather than a failure that may pass.
func accessDenied(err error) bool {
	if gcerrors.Code(err) == gcerrors.PermissionDenied || errors.Is(err, os.ErrPermission) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
			"InvalidToken", "ExpiredToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed",
			"InvalidSecurity", "AllAccessDisabled", "AccountProblem":
			return true
		}
	}
	var azErr *azcore.ResponseError
	if errors.As(err, &azErr) {
		switch azErr.ErrorCode {
		case "AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
			"InsufficientAccountPermissions", "AccountIsDisabled":
			return true
		}
		return azErr.StatusCode == http.StatusForbidden || azErr.StatusCode == http.StatusUnauthorized
	}
	var gErr *googleapi.Error
	if errors.As(err, &gErr) {
		return gErr.Code == http.StatusForbidden || gErr.Code == http.StatusUnauthorized
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode() == http.StatusForbidden || re.HTTPStatusCode() == http.StatusUnauthorized
	}
	return false
}

// bucketMissing reports whether err says the bucket or container itself does
// not exist.
func bucketMissing(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchBucket" || ae.ErrorCode() == "InvalidBucketName") {
		return true
	}
	var azErr *azcore.ResponseError
	if errors.As(err, &azErr) && azErr.ErrorCode == "ContainerNotFound" {
		return true
	}
	var gErr *googleapi.Error
	if errors.As(err, &gErr) && gErr.Code == http.StatusNotFound && strings.Contains(strings.ToLower(gErr.Message), "bucket") {
		return true
	}
	return false
}

// hint returns what a user should check for a backend, without secrets.
func hint(kind string) string {
	switch kind {
	case "s3":
		return "check aws_access_key_id, aws_secret_access_key (or the AWS default credential chain) and the bucket policy"
	case "azure":
		return "check account_name and account_key or sas_token, and the container's access policy"
	case "google":
		return "check credential_file (or the default Google credentials) and the service account's roles on the bucket"
	default:
		return "check the credentials and permissions"
	}
}

// unreachable reports whether err is a failure to reach the endpoint at
// all: a refused or timed-out connection, or a host name that does not
// resolve. The SDKs bury that under their own words ("exceeded maximum
// number of attempts"), so a wrong port reads as an S3 error.
func unreachable(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial")
}

// endpointHint says which settings name a backend's endpoint.
func endpointHint(kind string) string {
	switch kind {
	case "s3", "azure":
		return "check host, port and is_secure, and that the server is up"
	}
	return "check the network and that the service is up"
}

// schemeHint says which setting makes a backend speak plain HTTP.
func schemeHint(kind string) string {
	switch kind {
	case "s3", "azure":
		return "set is_secure false, or give port the endpoint's HTTPS port"
	}
	return "check the endpoint's address"
}

// errorf wraps err from operation op on key with context, turning permanent
// failures into ErrPermanent with an actionable message.
func errorf(kind, bucket, op, key string, err error) error {
	switch {
	case bucketMissing(err):
		err = &permanentError{msg: fmt.Sprintf("%s bucket %q does not exist: create it or fix bucket_name", kind, bucket), err: err}
	case accessDenied(err):
		err = &permanentError{msg: fmt.Sprintf("access denied to %s bucket %q: %s", kind, bucket, hint(kind)), err: err}
	case errors.Is(err, http.ErrSchemeMismatch):
		// The endpoint answered TLS with plain HTTP: no retry changes that.
		err = &permanentError{msg: fmt.Sprintf("the %s endpoint speaks plain HTTP, not HTTPS: %s", kind, schemeHint(kind)), err: err}
	case unreachable(err):
		// Still transient (the server may be starting): only the words change.
		err = fmt.Errorf("cannot reach the %s endpoint (%s): %w", kind, endpointHint(kind), err)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}
