package storage

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob/azureblob"
)

// Location names where c's objects are, without credentials: the storage
// type and the settings that choose the server, the account, the bucket,
// container or directory, and the prefix. A URL is given without its
// user information, and its query, which may hold settings of any kind,
// only as its SHA-256. Two configurations with one Location reach the
// same objects; wal-fetch's prefetch spool records it so that segments
// fetched from one storage are never delivered for another.
func (c Config) Location() string {
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil {
			return "url sha256:" + sum(c.URL) + " prefix=" + fmt.Sprintf("%q", c.Prefix)
		}
		q := u.RawQuery
		u.User, u.RawQuery, u.ForceQuery, u.Fragment = nil, "", false, ""
		s := u.String()
		if q != "" {
			s += " query sha256:" + sum(q)
		}
		return s + " prefix=" + fmt.Sprintf("%q", c.Prefix)
	}
	parts := []string{c.Type}
	add := func(key, v string) {
		if v != "" {
			parts = append(parts, fmt.Sprintf("%s=%q", key, v))
		}
	}
	add("directory", c.Directory)
	add("region", c.Region)
	add("bucket_name", c.BucketName)
	add("host", c.Host)
	if c.Port != 0 {
		add("port", fmt.Sprint(c.Port))
	}
	if c.IsSecure {
		add("is_secure", "true")
	}
	add("project_id", c.ProjectID)
	add("account_name", c.AccountName)
	add("azure_cloud", c.AzureCloud)
	add("auth_url", c.AuthURL)
	add("container_name", c.ContainerName)
	add("tenant_name", c.TenantName)
	add("tenant_id", c.TenantID)
	add("project_name", c.ProjectName)
	add("region_name", c.RegionName)
	add("server", c.Server)
	add("prefix", c.Prefix)
	return strings.Join(parts, " ")
}

// sum is the SHA-256 of s, in hex.
func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Place is c's Location with the spellings of one place made one: a
// local directory absolute and clean (relative to this process's working
// directory), with the symbolic links of the part of it that exists
// resolved (resolveLinks), an sftp directory clean, the object_storage prefix without
// the slashes the stores trim, an s3 or azure host in lower case with a
// port written in it taken out, the scheme's default port (443 with
// is_secure, 80 without) left out, and a port without a host (AWS's or
// Azure's own endpoint) left out, an sftp server's port 22 left out. Two
// configurations with one Place reach the same objects, as with one
// Location; unlike Location, two spellings of the same place (a daemon's
// configuration and a command's) have one Place. A configuration already
// spelled so has its Location as its Place, so a hoard that compares
// Locations (an older daemon or command) still matches it, unless its
// directory is reached through a link (an older hoard does not resolve
// it). Places that reach the same objects in other ways still differ: a
// local directory and prefix against the directory joined with the
// prefix.
func (c Config) Place() string {
	return c.canonical().Location()
}

// resolveLinks returns the absolute and clean directory dir with the
// symbolic links of its longest existing part resolved (what is missing,
// the storage directory before its first use, is joined to that as it
// is), so that a directory named through a link (a daemon's configuration
// naming /srv/hoard, a command's the link /backups to it) has one Place.
// It returns dir when no part can be resolved.
func resolveLinks(dir string) string {
	rest := ""
	for p := dir; ; {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return dir
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// LocalDir returns the local storage directory dir as Place spells it:
// absolute (relative to this process's working directory) and clean,
// with the symbolic links of the part of it that exists resolved
// (resolveLinks). It returns dir when it cannot be made absolute.
func LocalDir(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	return resolveLinks(abs)
}

// canonical returns c with the settings that name its place spelled one
// way, as its store (Open) uses them.
func (c Config) canonical() Config {
	if c.URL != "" {
		// newBucket trims the prefix's slashes.
		c.Prefix = strings.Trim(c.Prefix, "/")
		return c
	}
	switch c.Type {
	case TypeLocal:
		// Open joins the directory, relative to the working directory,
		// with the trimmed prefix.
		if c.Directory != "" {
			c.Directory = LocalDir(c.Directory)
		}
		c.Prefix = strings.Trim(c.Prefix, "/")
	case TypeS3, TypeAzure:
		c.Prefix = strings.Trim(c.Prefix, "/")
		if c.Host == "" {
			// AWS's or Azure's own endpoint: port unused.
			c.Port = 0
			break
		}
		if h, p, err := net.SplitHostPort(c.Host); err == nil && c.Port == 0 {
			if n, err := strconv.Atoi(p); err == nil && n > 0 && n <= 65535 {
				c.Host, c.Port = h, n
			}
		}
		c.Host = strings.ToLower(c.Host)
		if c.IsSecure && c.Port == 443 || !c.IsSecure && c.Port == 80 {
			c.Port = 0
		}
	case TypeGoogle, TypeSwift:
		c.Prefix = strings.Trim(c.Prefix, "/")
	case TypeSFTP:
		// openSFTP: the directory joined with the prefix, "." for none.
		if c.Directory != "" {
			c.Directory = path.Clean(c.Directory)
		}
		if c.Directory == "." {
			c.Directory = ""
		}
		c.Prefix = strings.Trim(c.Prefix, "/")
		c.Server = strings.ToLower(c.Server)
		if c.Port == 22 {
			c.Port = 0
		}
	}
	return c
}

// Where returns where c's objects lie, so that two configurations whose
// objects are the same, or lie one inside the other's, can be told
// (archive-copy's target against its source, two sites of one
// configuration): a server, the storage and the bucket or file system
// its keys are in, and the key prefix there, without slashes at its ends.
// Configurations with one server and one prefix reach the same objects;
// one whose prefix is another's followed by "/" reaches objects inside
// the other's. Spellings are made one further than Place makes them, as
// Open reaches the same objects through them:
//
//   - a local directory and a file:// URL (gocloud's fileblob: the URL's
//     path, relative to the working directory for host "."; its query
//     chooses no place) are server "file", the directory (as LocalDir
//     spells it) joined with the prefix the prefix;
//   - storage_type s3 and an s3:// URL are the endpoint's host in lower
//     case and port (the scheme's default, 443 or 80, when none is
//     written; a URL's endpoint with or without its trailing slash;
//     without one, the endpoint the AWS SDK takes from the environment,
//     awsEndpoint), or AWS's own endpoint, whatever the region (bucket
//     names are AWS-wide) and however written (awsS3Host), and the
//     bucket, whatever the addressing style;
//   - storage_type google and a gs:// URL are the bucket;
//   - storage_type azure and an azblob:// URL are the blob service's
//     host in lower case and port (the scheme's default when none is
//     written; Azure's own, https://<account>.<azure_cloud's suffix>,
//     without host), the account and the container, both in lower case
//     as Azure names them; an azblob:// URL's service as gocloud builds
//     it, from its query over the environment's AZURE_STORAGE_* (or from
//     the connection string, when that is its credential).
//
// Anything else is its Place without the prefix: another URL (mem://, an
// s3:// or azblob:// URL that gocloud would not open) matches only a URL
// of the same place, never a storage_type. A Swift storage is its
// Keystone's host and port and the container, with the region and the
// project (swiftWhere). An SFTP server is its host in
// lower case and port (22 when none is given), its key prefix the
// directory joined with the prefix, as openSFTP joins them (a relative
// directory as if the login directory were "/"). Two names of one server (an
// IP address and a host name) have two Wheres: SameServer tells whether
// they are one.
func (c Config) Where() (server, prefix string) {
	w, prefix := c.where()
	return w.String(), prefix
}

// at is a server as Where names it: its kind, the host name or address
// of the server (in lower case, without brackets; "" where the
// configuration names none: a local directory, AWS's or Google's own
// endpoint), its port, and the rest that names the storage there (the
// bucket, the account and container). A Swift storage's region and
// project (by name, by id) are apart: a configuration may leave them to
// Keystone (SameServer).
type at struct {
	kind, host, port, rest         string
	region, projectName, projectID string
}

// String is Where's server.
func (a at) String() string {
	s := a.kind
	if a.host != "" || a.port != "" {
		s += " endpoint=" + net.JoinHostPort(a.host, a.port)
	}
	if a.rest != "" {
		s += " " + a.rest
	}
	for _, kv := range [][2]string{{"region", a.region}, {"project", a.projectName}, {"project_id", a.projectID}} {
		if kv[1] != "" {
			s += fmt.Sprintf(" %s=%q", kv[0], kv[1])
		}
	}
	return s
}

// sameButHost reports whether a and b are one server if their hosts are
// one: the same kind, port and rest, and for Swift no region and no
// project that tell them apart (one left out matches any; a project
// named by name on one side and by id on the other cannot be told apart
// without asking Keystone, so it matches too).
func (a at) sameButHost(b at) bool {
	if a.kind != b.kind || a.port != b.port || a.rest != b.rest {
		return false
	}
	if a.region != b.region && a.region != "" && b.region != "" {
		return false
	}
	switch {
	case a.projectID != "" && a.projectID == b.projectID, a.projectName != "" && a.projectName == b.projectName:
		return true
	case a.projectID != "" && b.projectID != "", a.projectName != "" && b.projectName != "":
		return false
	}
	return true
}

// where is Where with the server's parts apart.
func (c Config) where() (server at, prefix string) {
	c = c.canonical()
	prefix = strings.Trim(c.Prefix, "/")
	if c.URL != "" {
		if s, p, ok := urlWhere(c.URL); ok {
			return s, joinKey(p, prefix)
		}
	} else {
		switch c.Type {
		case TypeLocal:
			if c.Directory != "" {
				return at{kind: "file"}, joinKey(strings.Trim(filepath.ToSlash(c.Directory), "/"), prefix)
			}
		case TypeS3:
			if c.Host == "" {
				// openS3 gives the SDK no endpoint: it takes the
				// environment's, else AWS's own.
				if s, ok := s3Endpoint(awsEndpoint(""), c.BucketName, false); ok {
					return s, prefix
				}
				return s3Server("", "", c.BucketName), prefix
			}
			port := c.Port
			if port == 0 {
				port = 80
				if c.IsSecure {
					port = 443
				}
			}
			return s3Server(c.Host, strconv.Itoa(port), c.BucketName), prefix
		case TypeGoogle:
			return at{kind: "gs", rest: fmt.Sprintf("bucket=%q", c.BucketName)}, prefix
		case TypeAzure:
			if svc, err := azureServiceURL(c); err == nil {
				if s, ok := azureWhere(svc, c.AccountName, c.BucketName); ok {
					return s, prefix
				}
			}
		case TypeSwift:
			if s, ok := swiftWhere(c); ok {
				return s, prefix
			}
		case TypeSFTP:
			// openSFTP: port 22 when none is given, the files under the
			// directory joined with the prefix. A relative one is under
			// the login directory, which only the server knows: it is
			// compared as if that were "/", so that it and the absolute
			// path of its name are one place (a false "one place" only
			// refuses).
			host, port := hostName(c.Server), c.Port
			if port == 0 {
				port = 22
			}
			return at{kind: "sftp", host: host, port: strconv.Itoa(port)}, strings.Trim(path.Join(c.Directory, prefix), "/")
		}
	}
	c.Prefix = ""
	return at{kind: c.Location()}, prefix
}

// swiftWhere is Where's server of a Swift storage: its Keystone's (or
// v1 auth endpoint's) host and port (the scheme's default when none is
// written), whatever the auth path and version, and the container; the
// region, and the project as openSwift names it to Keystone (v1: the
// account of user account:user; v2: tenant_name, tenant_id; v3:
// project_name or tenant_name, project_id or tenant_id), apart. The
// endpoint type is left out: public, internal and admin URLs reach one
// cluster. ok false when auth_url names no host.
func swiftWhere(c Config) (at, bool) {
	u, port, ok := serverURL(c.AuthURL)
	if !ok {
		return at{}, false
	}
	s := at{kind: "swift", host: hostName(u.Hostname()), port: port, rest: fmt.Sprintf("container=%q", c.ContainerName), region: c.RegionName}
	version, _ := swiftAuthVersion(c.AuthVersion)
	switch version {
	case 1:
		if account, _, ok := strings.Cut(c.User, ":"); ok {
			s.projectName = account
		}
	case 3:
		s.projectName, s.projectID = cmp.Or(c.ProjectName, c.TenantName), cmp.Or(c.ProjectID, c.TenantID)
	default:
		s.projectName, s.projectID = c.TenantName, c.TenantID
	}
	return s, true
}

// hostName is host as a server is compared by: in lower case, without
// the brackets of an IPv6 address or the dot that ends a fully
// qualified name.
func hostName(host string) string {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// s3Server is Where's server of an S3 bucket at host and port ("", or
// one of AWS's S3 endpoints: AWS's own).
func s3Server(host, port, bucket string) at {
	rest := fmt.Sprintf("bucket=%q", bucket)
	host = hostName(host)
	if host == "" || awsS3Host(host) {
		return at{kind: "s3 aws", rest: rest}
	}
	return at{kind: "s3", host: host, port: port, rest: rest}
}

// awsS3Host reports whether host is one of AWS's S3 endpoints, where
// every bucket of the partition is: a name under amazonaws.com (or
// amazonaws.com.cn) with a label s3 or s3-*, as s3.amazonaws.com,
// s3.eu-west-1.amazonaws.com, s3-eu-west-1.amazonaws.com,
// s3.dualstack.eu-west-1.amazonaws.com, s3-fips.us-east-1.amazonaws.com,
// a bucket's virtual host or an interface endpoint
// (bucket.vpce-....s3.us-east-1.vpce.amazonaws.com).
func awsS3Host(host string) bool {
	var rest string
	switch {
	case strings.HasSuffix(host, ".amazonaws.com"):
		rest = strings.TrimSuffix(host, ".amazonaws.com")
	case strings.HasSuffix(host, ".amazonaws.com.cn"):
		rest = strings.TrimSuffix(host, ".amazonaws.com.cn")
	default:
		return false
	}
	for _, l := range strings.Split(rest, ".") {
		if l == "s3" || strings.HasPrefix(l, "s3-") {
			return true
		}
	}
	return false
}

// awsEndpoint is the endpoint the AWS SDK takes when hoard gives it none
// (storage_type s3 without host, an s3:// URL without endpoint):
// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or the shared configuration's
// endpoint_url of profile ("": the default one), unless
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true; "" for AWS's own, and
// when the configuration cannot be loaded (the store cannot open
// either). It asks the SDK itself, which reads no network.
func awsEndpoint(profile string) string {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion("us-east-1")}
	if profile != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(profile))
	}
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		return ""
	}
	return aws.ToString(s3.NewFromConfig(cfg).Options().BaseEndpoint)
}

// s3Endpoint is Where's server of bucket at the endpoint ep, a URL or,
// as gocloud's s3:// URLs take it, a host[:port] (https, or http with
// disableHTTPS): its host in lower case and port (the scheme's default
// when none is written); ok false for no endpoint, or one that does not
// parse or has a path.
func s3Endpoint(ep, bucket string, disableHTTPS bool) (at, bool) {
	if ep == "" {
		return at{}, false
	}
	if !strings.Contains(ep, "://") {
		scheme := "https"
		if disableHTTPS {
			scheme = "http"
		}
		ep = scheme + "://" + ep
	}
	e, port, ok := serverURL(ep)
	if !ok || strings.Trim(e.Path, "/") != "" {
		return at{}, false
	}
	return s3Server(e.Hostname(), port, bucket), true
}

// serverURL parses raw, a server's http or https URL, and returns it with
// its port (the scheme's default when none is written); ok false when
// raw does not parse, names no host or has another scheme without a port.
func serverURL(raw string) (*url.URL, string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return nil, "", false
	}
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		default:
			return nil, "", false
		}
	}
	return u, port, true
}

// urlWhere is Where for the gocloud URLs it knows: file://, s3://, gs://
// and azblob://; ok false for others.
func urlWhere(raw string) (server at, prefix string, ok bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return at{}, "", false
	}
	switch strings.ToLower(u.Scheme) {
	case "file":
		// gocloud's fileblob opens the URL's path, relative for host ".",
		// and ignores any other host.
		dir := u.Path
		if u.Host == "." {
			dir = strings.TrimPrefix(dir, "/")
		}
		if dir == "" {
			return at{}, "", false
		}
		return at{kind: "file"}, strings.Trim(filepath.ToSlash(LocalDir(filepath.FromSlash(dir))), "/"), true
	case "s3":
		q := u.Query()
		ep := q.Get("endpoint")
		if ep == "" {
			// gocloud gives the SDK no endpoint: it takes the
			// environment's (or the URL's profile's), else AWS's own.
			if s, ok := s3Endpoint(awsEndpoint(q.Get("profile")), u.Host, false); ok {
				return s, "", true
			}
			return s3Server("", "", u.Host), "", true
		}
		disable, _ := strconv.ParseBool(q.Get("disable_https"))
		s, ok := s3Endpoint(ep, u.Host, disable)
		return s, "", ok
	case "gs":
		return at{kind: "gs", rest: fmt.Sprintf("bucket=%q", u.Host)}, "", true
	case "azblob":
		s, ok := azblobWhere(u)
		return s, "", ok
	}
	return at{}, "", false
}

// azureWhere is Where's server of container in account at the blob
// service URL svc: the service's host in lower case and port (the
// scheme's default when none is written), the account (the first
// segment of svc's path where it has one, Azurite's form, else account)
// and the container, both in lower case as Azure names them; ok false
// when svc names no host or account.
func azureWhere(svc, account, container string) (at, bool) {
	u, port, ok := serverURL(svc)
	if !ok {
		return at{}, false
	}
	if a, _, _ := strings.Cut(strings.Trim(u.Path, "/"), "/"); a != "" {
		account = a
	}
	if account == "" {
		return at{}, false
	}
	return at{kind: "azure", host: hostName(u.Hostname()), port: port,
		rest: fmt.Sprintf("account=%q container=%q", strings.ToLower(account), strings.ToLower(container))}, true
}

// azblobWhere is Where's server of an azblob:// URL, opened as gocloud's
// azureblob opens it: the service URL from the account, domain,
// protocol, CDN and emulator settings of the environment
// (AZURE_STORAGE_*) with the URL's query over them, or, when the
// credential is a connection string (no account and key, no SAS token),
// the connection string's endpoint. ok false for a URL gocloud refuses.
func azblobWhere(u *url.URL) (at, bool) {
	container := u.Host
	account, key := os.Getenv("AZURE_STORAGE_ACCOUNT"), os.Getenv("AZURE_STORAGE_KEY")
	conn := cmp.Or(os.Getenv("AZURE_STORAGE_CONNECTION_STRING"), os.Getenv("AZURE_STORAGEBLOB_CONNECTIONSTRING"))
	if (account == "" || key == "") && os.Getenv("AZURE_STORAGE_SAS_TOKEN") == "" && conn != "" {
		// gocloud's client comes from the connection string alone
		// (container.NewClientFromConnectionString), parsed as the SDK
		// parses it.
		kv := map[string]string{}
		for part := range strings.SplitSeq(strings.TrimRight(conn, ";"), ";") {
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				return at{}, false
			}
			kv[k] = v
		}
		svc := kv["BlobEndpoint"]
		if svc == "" && kv["AccountName"] != "" {
			svc = cmp.Or(kv["DefaultEndpointsProtocol"], "https") + "://" + kv["AccountName"] + ".blob." + cmp.Or(kv["EndpointSuffix"], "core.windows.net")
		}
		return azureWhere(svc, kv["AccountName"], container)
	}
	opts := azureblob.NewDefaultServiceURLOptions()
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			return at{}, false
		}
		v := vs[0]
		var err error
		switch k {
		case "domain":
			opts.StorageDomain = v
		case "protocol":
			opts.Protocol = v
		case "cdn":
			opts.IsCDN, err = strconv.ParseBool(v)
		case "localemu":
			opts.IsLocalEmulator, err = strconv.ParseBool(v)
		case "storage_account":
			opts.AccountName = v
		default:
			return at{}, false
		}
		if err != nil {
			return at{}, false
		}
	}
	svc, err := azureblob.NewServiceURL(opts)
	if err != nil {
		return at{}, false
	}
	return azureWhere(string(svc), opts.AccountName, container)
}

// joinKey joins two key prefixes without slashes at their ends, either
// possibly empty.
func joinKey(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "/" + b
}
