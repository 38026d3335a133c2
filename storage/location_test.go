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
