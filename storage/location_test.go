package storage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfig_Location: configurations that reach other objects (another
// bucket, directory, server or prefix) have other locations, and no
// credential appears in one.
func TestConfig_Location(t *testing.T) {
	const secret = "s3cr3t-value"
	s3 := Config{Type: TypeS3, BucketName: "b", Region: "eu-west-1", Prefix: "p",
		AccessKeyID: secret, SecretAccessKey: secret, SessionToken: secret}
	cases := []Config{
		s3,
		{Type: TypeS3, BucketName: "other", Region: "eu-west-1", Prefix: "p", SecretAccessKey: secret},
		{Type: TypeS3, BucketName: "b", Region: "eu-west-1", Prefix: "q", SecretAccessKey: secret},
		{Type: TypeS3, BucketName: "b", Region: "eu-west-1", Prefix: "p", Host: "minio", Port: 9000, SecretAccessKey: secret},
		{Type: TypeLocal, Directory: "/srv/a"},
		{Type: TypeLocal, Directory: "/srv/b"},
		{Type: TypeAzure, AccountName: "acct", BucketName: "c", AccountKey: secret, SASToken: secret},
		{Type: TypeSwift, User: "u", Key: secret, AuthURL: "https://keystone", ContainerName: "c"},
		{Type: TypeSFTP, Server: "h", Username: "u", Password: secret, Directory: "/d"},
		{URL: "s3://" + secret + ":" + secret + "@bucket?region=" + secret},
		{URL: "s3://bucket?region=other"},
	}
	seen := map[string]int{}
	for i, c := range cases {
		loc := c.Location()
		if strings.Contains(loc, secret) {
			t.Errorf("case %d: location %q shows a credential", i, loc)
		}
		if j, ok := seen[loc]; ok {
			t.Errorf("cases %d and %d: same location %q", j, i, loc)
		}
		seen[loc] = i
	}
	if a, b := s3.Location(), (Config{Type: TypeS3, BucketName: "b", Region: "eu-west-1", Prefix: "p"}).Location(); a != b {
		t.Errorf("credentials change the location: %q, %q", a, b)
	}
}

// TestConfig_Place: spellings of one place (a relative or unclean
// directory, a prefix with or without its slashes, an endpoint's default
// port given or not, a host in capitals) have one Place, as they reach
// the same objects; configurations that reach other objects still have
// other Places.
func TestConfig_Place(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	minio := Config{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Port: 9000, Prefix: "p"}
	same := [][]Config{
		{
			{Type: TypeLocal, Directory: "/srv/a"},
			{Type: TypeLocal, Directory: "/srv/a/"},
			{Type: TypeLocal, Directory: "/srv//b/../a/."},
		},
		{
			{Type: TypeLocal, Directory: "/srv", Prefix: "a"},
			{Type: TypeLocal, Directory: "/srv/", Prefix: "/a/"},
		},
		{
			{Type: TypeLocal, Directory: "store"},
			{Type: TypeLocal, Directory: "./store/"},
			{Type: TypeLocal, Directory: filepath.Join(cwd, "store")},
		},
		{
			minio,
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "MinIO", Port: 9000, Prefix: "p/"},
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio:9000", Prefix: "/p"},
		},
		{
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.example.com", IsSecure: true},
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.example.com", Port: 443, IsSecure: true},
		},
		{
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.example.com"},
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.example.com", Port: 80},
		},
		{
			// Without a host, AWS's or Azure's endpoint: port unused.
			{Type: TypeS3, BucketName: "b", Region: "r", Prefix: "p"},
			{Type: TypeS3, BucketName: "b", Region: "r", Prefix: "p/", Port: 9000},
		},
		{
			{Type: TypeAzure, AccountName: "acct", BucketName: "c", IsSecure: true},
			{Type: TypeAzure, AccountName: "acct", BucketName: "c", IsSecure: true, Port: 443},
		},
		{
			{Type: TypeGoogle, BucketName: "b", Prefix: "p"},
			{Type: TypeGoogle, BucketName: "b", Prefix: "/p/"},
		},
		{
			{Type: TypeSFTP, Server: "h", Directory: "/d", Prefix: "p"},
			{Type: TypeSFTP, Server: "H", Port: 22, Directory: "/d/", Prefix: "/p/"},
		},
		{
			{Type: TypeSFTP, Server: "h"},
			{Type: TypeSFTP, Server: "h", Directory: "."},
		},
		{
			{URL: "s3://bucket?region=r", Prefix: "p"},
			{URL: "s3://bucket?region=r", Prefix: "p/"},
		},
	}
	for i, group := range same {
		for _, c := range group[1:] {
			if a, b := group[0].Place(), c.Place(); a != b {
				t.Errorf("group %d: one place, two Places: %q, %q", i, a, b)
			}
		}
	}
	other := []Config{
		{Type: TypeLocal, Directory: "/srv/a"},
		{Type: TypeLocal, Directory: "/srv/a/b"},
		{Type: TypeLocal, Directory: "/srv/b"},
		{Type: TypeLocal, Directory: "/srv", Prefix: "c"},
		{Type: TypeLocal, Directory: "/srv", Prefix: "c/d"},
		{Type: TypeLocal, Directory: "store"},
		minio,
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Port: 9001, Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Port: 9000, Prefix: "p", IsSecure: true},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Port: 9000, Prefix: "q"},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Port: 9000, Prefix: "p/q"},
		{Type: TypeS3, BucketName: "B", Region: "r", Host: "minio", Port: 9000, Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.example.com", Port: 443},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.example.com", Port: 80, IsSecure: true},
		{Type: TypeS3, BucketName: "b", Region: "r", Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Prefix: "P"},
		{Type: TypeAzure, AccountName: "acct", BucketName: "c", IsSecure: true},
		{Type: TypeAzure, AccountName: "acct", BucketName: "c", Host: "azurite", Port: 10000},
		{Type: TypeGoogle, BucketName: "b", Prefix: "p"},
		{Type: TypeSFTP, Server: "h", Directory: "/d", Prefix: "p"},
		{Type: TypeSFTP, Server: "h", Port: 2222, Directory: "/d", Prefix: "p"},
		{Type: TypeSFTP, Server: "h", Directory: "d", Prefix: "p"},
		{URL: "s3://bucket?region=r", Prefix: "p"},
		{URL: "s3://bucket?region=r", Prefix: "q"},
	}
	seen := map[string]int{}
	for i, c := range other {
		p := c.Place()
		if j, ok := seen[p]; ok {
			t.Errorf("cases %d and %d: other places, one Place %q", j, i, p)
		}
		seen[p] = i
	}
}

// TestConfig_PlaceIsLocation: a configuration spelled as Place spells it
// has its Location as its Place, so that a hoard comparing Locations (a
// daemon or command of an earlier version, b7854ba) and one comparing
// Places agree on it.
func TestConfig_PlaceIsLocation(t *testing.T) {
	for _, c := range []Config{
		{Type: TypeLocal, Directory: "/var/lib/hoard"},
		{Type: TypeLocal, Directory: "/srv", Prefix: "p/q"},
		{Type: TypeS3, BucketName: "b", Region: "eu-west-1", Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Port: 9000},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.example.com", IsSecure: true},
		{Type: TypeAzure, AccountName: "acct", BucketName: "c", IsSecure: true},
		{Type: TypeAzure, AccountName: "devstoreaccount1", BucketName: "c", Host: "127.0.0.1", Port: 10000},
		{Type: TypeGoogle, BucketName: "b", Prefix: "p"},
		{Type: TypeSwift, AuthURL: "https://keystone", ContainerName: "c"},
		{Type: TypeSFTP, Server: "h", Directory: "/d", Prefix: "p"},
		{URL: "s3://bucket?region=r", Prefix: "p"},
	} {
		if p, l := c.Place(), c.Location(); p != l {
			t.Errorf("%+v: Place %q, Location %q", c, p, l)
		}
	}
}

// TestConfig_Where: configurations that reach the same objects, however
// they are written (a file:// URL and storage_type local naming one
// directory, a directory joined with the prefix, an s3:// URL and
// storage_type s3 naming one endpoint and bucket, an endpoint with a
// trailing slash, a host in capitals, its default port written or not),
// are in one place under one key prefix, and configurations that reach
// others are not. No credential is shown.
func TestConfig_Where(t *testing.T) {
	noAWSEnv(t)
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	const secret = "s3cr3t-value"
	type where struct{ server, prefix string }
	same := [][]Config{
		{
			{Type: TypeLocal, Directory: "/srv/a", Prefix: "p"},
			{Type: TypeLocal, Directory: "/srv/a/p/"},
			{Type: TypeLocal, Directory: "/srv", Prefix: "/a/p/"},
			{URL: "file:///srv/a", Prefix: "p"},
			{URL: "file:///srv/a/p?create_dir=true&metadata=skip"},
			{URL: "file:///srv/", Prefix: "a/p"},
			{URL: "file://localhost/srv/a/p"},
		},
		{
			{Type: TypeLocal, Directory: "store"},
			{URL: "file://./store"},
			{URL: "file://" + filepath.ToSlash(filepath.Join(cwd, "store"))},
		},
		{
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Port: 9000, Prefix: "p", AccessKeyID: secret, SecretAccessKey: secret},
			{Type: TypeS3, BucketName: "b", Region: "other", Host: "MinIO:9000", Prefix: "/p/"},
			{URL: "s3://b?region=r&endpoint=http://minio:9000", Prefix: "p"},
			{URL: "s3://b?endpoint=http%3A%2F%2FMINIO%3A9000%2F&use_path_style=true", Prefix: "p"},
			{URL: "s3://" + secret + ":" + secret + "@b?endpoint=http://minio:9000/&region=r", Prefix: "p"},
		},
		{
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.example.com", IsSecure: true},
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.example.com", Port: 443, IsSecure: true},
			{URL: "s3://b?endpoint=https://S3.example.com"},
			{URL: "s3://b?endpoint=https://s3.example.com:443/"},
		},
		{
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio"},
			{URL: "s3://b?endpoint=http://minio:80"},
		},
		{
			// AWS's own endpoint, in any region: bucket names are global.
			{Type: TypeS3, BucketName: "b", Region: "eu-west-1", Prefix: "p"},
			{Type: TypeS3, BucketName: "b", Region: "us-east-1", Prefix: "p"},
			{URL: "s3://b?region=eu-west-1", Prefix: "p"},
			{URL: "s3://b", Prefix: "p/"},
			// AWS's endpoints written out: regional, legacy, dual-stack,
			// FIPS, virtual-host style, an interface endpoint.
			{Type: TypeS3, BucketName: "b", Region: "eu-west-1", Host: "s3.eu-west-1.amazonaws.com", IsSecure: true, Prefix: "p"},
			{Type: TypeS3, BucketName: "b", Region: "us-east-1", Host: "S3.amazonaws.com", Port: 443, IsSecure: true, Prefix: "p", AddressingStyle: "virtual"},
			{Type: TypeS3, BucketName: "b", Region: "us-east-1", Host: "bucket.vpce-1a2b3c4d-5e6f.s3.us-east-1.vpce.amazonaws.com", IsSecure: true, Prefix: "p"},
			{URL: "s3://b?endpoint=https://s3.dualstack.eu-west-1.amazonaws.com&region=eu-west-1", Prefix: "p"},
			{URL: "s3://b?endpoint=s3-eu-west-1.amazonaws.com", Prefix: "p"},
			{URL: "s3://b?endpoint=https://s3-fips.us-east-1.amazonaws.com/&use_path_style=true", Prefix: "p"},
		},
		{
			// Path or virtual-host style: one bucket at one endpoint.
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio.example.com", Port: 9000, AddressingStyle: "path"},
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio.example.com", Port: 9000, AddressingStyle: "virtual"},
			{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio.example.com", Port: 9000, AddressingStyle: "auto"},
			{URL: "s3://b?endpoint=http://minio.example.com:9000&use_path_style=false"},
			{URL: "s3://b?endpoint=minio.example.com:9000&disable_https=true&s3ForcePathStyle=true"},
		},
		{
			{Type: TypeGoogle, BucketName: "b", Prefix: "p"},
			{URL: "gs://b", Prefix: "/p"},
		},
		{
			{URL: "mem://", Prefix: "p"},
			{URL: "mem://", Prefix: "p/"},
		},
		{
			// SFTP: the directory joined with the prefix, as openSFTP
			// joins them; the server in lower case, port 22 or none.
			{Type: TypeSFTP, Server: "backup.example", Directory: "/srv/a", Prefix: "p", Password: secret},
			{Type: TypeSFTP, Server: "Backup.Example", Port: 22, Directory: "/srv/a/p/"},
			{Type: TypeSFTP, Server: "backup.example", Directory: "/", Prefix: "srv/a/p"},
			{Type: TypeSFTP, Server: "backup.example", Directory: "/srv//x/../a", Prefix: "/p/"},
			{Type: TypeSFTP, Server: "backup.example", Prefix: "/srv/a/p"},
		},
		{
			{Type: TypeSFTP, Server: "backup.example", Directory: "d", Prefix: "p"},
			{Type: TypeSFTP, Server: "backup.example", Prefix: "d/p"},
			{Type: TypeSFTP, Server: "backup.example", Directory: "./d/p"},
		},
		{
			// Azurite: the account in the path of the endpoint; an
			// azblob:// URL with a local domain (localemu or 127.0.0.1).
			{Type: TypeAzure, AccountName: "devstoreaccount1", BucketName: "c", Host: "127.0.0.1", Port: 10000, Prefix: "p", AccountKey: secret},
			{Type: TypeAzure, AccountName: "DevStoreAccount1", BucketName: "C", Host: "127.0.0.1:10000", Prefix: "/p/"},
			{URL: "azblob://c?protocol=http&domain=127.0.0.1:10000&storage_account=devstoreaccount1", Prefix: "p"},
			{URL: "azblob://c?protocol=http&domain=127.0.0.1%3A10000&storage_account=devstoreaccount1&localemu=true", Prefix: "p/"},
		},
		{
			{Type: TypeAzure, AccountName: "devstoreaccount1", BucketName: "c", Host: "azurite", IsSecure: true},
			{Type: TypeAzure, AccountName: "devstoreaccount1", BucketName: "c", Host: "Azurite", Port: 443, IsSecure: true},
			{URL: "azblob://c?domain=AZURITE:443&storage_account=devstoreaccount1&localemu=true"},
		},
		{
			// Azure's own endpoint: https, whatever is_secure and port say.
			{Type: TypeAzure, AccountName: "acct", BucketName: "c", IsSecure: true, Prefix: "p"},
			{Type: TypeAzure, AccountName: "acct", BucketName: "c", AzureCloud: "public", Prefix: "p"},
			{URL: "azblob://c?storage_account=acct", Prefix: "p"},
			{URL: "azblob://C?storage_account=ACCT&domain=blob.core.windows.net&protocol=https", Prefix: "p"},
		},
		{
			{Type: TypeAzure, AccountName: "acct", BucketName: "c", AzureCloud: "china"},
			{URL: "azblob://c?storage_account=acct&domain=blob.core.chinacloudapi.cn"},
		},
	}
	for i, group := range same {
		var first where
		for j, c := range group {
			s, p := c.Where()
			if strings.Contains(s+p, secret) {
				t.Errorf("group %d case %d: Where %q %q shows a credential", i, j, s, p)
			}
			if j == 0 {
				first = where{s, p}
			} else if (where{s, p}) != first {
				t.Errorf("group %d: one place, case %d is %q %q, case 0 %q %q", i, j, s, p, first.server, first.prefix)
			}
		}
	}
	other := []Config{
		{Type: TypeLocal, Directory: "/srv/a", Prefix: "p"},
		{Type: TypeLocal, Directory: "/srv/a", Prefix: "q"},
		{Type: TypeLocal, Directory: "/srv/b", Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Port: 9000, Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Port: 9001, Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio2", Port: 9000, Prefix: "p"},
		{Type: TypeS3, BucketName: "c", Region: "r", Host: "minio", Port: 9000, Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Prefix: "p", IsSecure: true},
		{Type: TypeGoogle, BucketName: "b", Prefix: "p"},
		{Type: TypeAzure, AccountName: "acct", BucketName: "b", Prefix: "p"},
		{URL: "s3://b?endpoint=http://minio:9002", Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.amazonaws.com.example.org", IsSecure: true, Prefix: "p"},
		{Type: TypeS3, BucketName: "b", Region: "r", Host: "ec2.amazonaws.com", IsSecure: true, Prefix: "p"},
		{Type: TypeAzure, AccountName: "acct2", BucketName: "b", Prefix: "p"},
		{Type: TypeSFTP, Server: "backup.example", Directory: "/srv/a", Prefix: "p"},
		{Type: TypeSFTP, Server: "backup.example", Directory: "/srv/a", Prefix: "q"},
		{Type: TypeSFTP, Server: "backup.example", Port: 2222, Directory: "/srv/a", Prefix: "p"},
		{Type: TypeSFTP, Server: "other.example", Directory: "/srv/a", Prefix: "p"},
		{Type: TypeAzure, AccountName: "acct", BucketName: "c", Prefix: "p"},
		{Type: TypeAzure, AccountName: "acct", BucketName: "b", Prefix: "p", AzureCloud: "china"},
		{Type: TypeAzure, AccountName: "acct", BucketName: "b", Prefix: "p", Host: "127.0.0.1", Port: 10000},
		{Type: TypeAzure, AccountName: "acct", BucketName: "b", Prefix: "p", Host: "127.0.0.1", Port: 10001},
		{Type: TypeAzure, AccountName: "other", BucketName: "b", Prefix: "p", Host: "127.0.0.1", Port: 10000},
		{URL: "azblob://b?storage_account=acct&domain=127.0.0.1:10002&protocol=http", Prefix: "p"},
	}
	seen := map[where]int{}
	for i, c := range other {
		s, p := c.Where()
		if j, ok := seen[where{s, p}]; ok {
			t.Errorf("cases %d and %d: other places, one Where %q %q", j, i, s, p)
		}
		seen[where{s, p}] = i
	}
}

// TestConfig_WhereAzureEnv: an azblob:// URL takes its account, domain
// and protocol from the environment where its query does not name them,
// and its endpoint from a connection string when that is the credential
// gocloud uses, as gocloud's azureblob opens it; Where follows.
func TestConfig_WhereAzureEnv(t *testing.T) {
	for _, k := range []string{"AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
		"AZURE_STORAGEBLOB_CONNECTIONSTRING", "AZURE_STORAGE_DOMAIN", "AZURE_STORAGE_PROTOCOL", "AZURE_STORAGE_IS_CDN", "AZURE_STORAGE_IS_LOCAL_EMULATOR"} {
		t.Setenv(k, "")
	}
	azurite := Config{Type: TypeAzure, AccountName: "devstoreaccount1", BucketName: "c", Host: "127.0.0.1", Port: 10000, Prefix: "p"}
	same := func(t *testing.T, a, b Config) {
		t.Helper()
		sa, pa := a.Where()
		sb, pb := b.Where()
		if sa != sb || pa != pb {
			t.Errorf("one place, two: %q %q and %q %q", sa, pa, sb, pb)
		}
	}
	t.Run("Account", func(t *testing.T) {
		t.Setenv("AZURE_STORAGE_ACCOUNT", "devstoreaccount1")
		t.Setenv("AZURE_STORAGE_KEY", "k")
		t.Setenv("AZURE_STORAGE_DOMAIN", "127.0.0.1:10000")
		t.Setenv("AZURE_STORAGE_PROTOCOL", "http")
		same(t, azurite, Config{URL: "azblob://c", Prefix: "p"})
	})
	t.Run("ConnectionString", func(t *testing.T) {
		t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=k;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
		same(t, azurite, Config{URL: "azblob://c", Prefix: "p"})
	})
	t.Run("ConnectionStringPublic", func(t *testing.T) {
		t.Setenv("AZURE_STORAGEBLOB_CONNECTIONSTRING", "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=k;EndpointSuffix=core.windows.net")
		same(t, Config{Type: TypeAzure, AccountName: "acct", BucketName: "c"}, Config{URL: "azblob://c"})
	})
}

// TestConfig_WhereAWSEnv: without a host (or an s3:// URL without an
// endpoint), the AWS SDK takes its endpoint from AWS_ENDPOINT_URL_S3 or
// AWS_ENDPOINT_URL, unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true;
// Where follows, so such a configuration is the server it names.
func TestConfig_WhereAWSEnv(t *testing.T) {
	noAWSEnv(t)
	minio := Config{Type: TypeS3, BucketName: "b", Region: "r", Host: "minio", Port: 9000, Prefix: "p"}
	aws := Config{Type: TypeS3, BucketName: "b", Region: "r", Prefix: "p"}
	url := Config{URL: "s3://b?region=r", Prefix: "p"}
	check := func(t *testing.T, a, b Config, same bool) {
		t.Helper()
		sa, pa := a.Where()
		sb, pb := b.Where()
		if (sa == sb && pa == pb) != same {
			t.Errorf("%q %q and %q %q: one place %v, want %v", sa, pa, sb, pb, !same, same)
		}
	}
	t.Run("S3", func(t *testing.T) {
		t.Setenv("AWS_ENDPOINT_URL_S3", "http://MinIO:9000/")
		check(t, minio, aws, true)
		check(t, minio, url, true)
	})
	t.Run("All", func(t *testing.T) {
		t.Setenv("AWS_ENDPOINT_URL", "http://minio:9000")
		check(t, minio, aws, true)
		check(t, minio, url, true)
	})
	t.Run("Ignored", func(t *testing.T) {
		t.Setenv("AWS_ENDPOINT_URL_S3", "http://minio:9000")
		t.Setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
		check(t, minio, aws, false)
		check(t, Config{Type: TypeS3, BucketName: "b", Region: "r", Host: "s3.amazonaws.com", IsSecure: true, Prefix: "p"}, aws, true)
	})
}

// noAWSEnv keeps the AWS SDK's endpoint settings of the environment and
// the shared configuration files out of a test.
func noAWSEnv(t *testing.T) {
	t.Helper()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_PROFILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}
