package storage

import (
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
