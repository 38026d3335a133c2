package storage

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// fakeResolver answers from a table and counts the lookups.
type fakeResolver struct {
	addrs   map[string][]string
	lookups []string
}

func (f *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.lookups = append(f.lookups, host)
	as, ok := f.addrs[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, a := range as {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

// TestSameServer: two names of one host (a name and its address, names
// with an address in common, every name of this machine) are one server
// when the rest of the storage is the same; names without an address in
// common are two; a name that does not resolve is an error, never "two
// servers"; a storage that differs in more than its host is another
// without a lookup.
func TestSameServer(t *testing.T) {
	minio := func(host string, port int) Config {
		return Config{Type: TypeS3, BucketName: "b", Region: "r", Host: host, Port: port}
	}
	azurite := func(host string) Config {
		return Config{Type: TypeAzure, AccountName: "devstoreaccount1", BucketName: "c", Host: host, Port: 10000}
	}
	sftp := func(server string) Config {
		return Config{Type: TypeSFTP, Server: server, Directory: "/d"}
	}
	swiftAt := func(authURL, version, region string, edit func(*Config)) Config {
		c := Config{Type: TypeSwift, User: "u", Key: "k", AuthURL: authURL, AuthVersion: version, RegionName: region, ContainerName: "pghoard"}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	ks := "https://keystone.example:5000/v3"
	for _, tc := range []struct {
		name    string
		a, b    Config
		same    bool
		err     string // in the error; "" for none
		lookups int
	}{
		{"SameName", minio("minio", 9000), minio("MinIO", 9000), true, "", 0},
		{"Loopback", minio("localhost", 9000), minio("127.0.0.1", 9000), true, "", 0},
		{"LoopbackV6", minio("127.0.0.1", 9000), minio("::1", 9000), true, "", 0},
		{"LoopbackV6Bracketed", minio("[::1]:9000", 0), minio("localhost", 9000), true, "", 0},
		{"OtherLoopback", minio("127.0.0.2", 9000), minio("LOCALHOST.", 9000), true, "", 0},
		{"Unspecified", minio("0.0.0.0", 9000), minio("127.0.0.1", 9000), true, "", 0},
		{"Mapped", minio("::ffff:10.0.0.5", 9000), minio("10.0.0.5", 9000), true, "", 0},
		{"NameAndAddress", minio("minio.internal", 9000), minio("10.0.0.5", 9000), true, "", 1},
		{"NameToLoopback", minio("minio.test", 9000), minio("localhost", 9000), true, "", 1},
		{"NamesShareAddress", minio("a.example", 9000), minio("b.example", 9000), true, "", 2},
		{"NamesApart", minio("a.example", 9000), minio("c.example", 9000), false, "", 2},
		{"AddressesApart", minio("10.0.0.5", 9000), minio("10.0.0.6", 9000), false, "", 0},
		{"Unresolved", minio("nowhere.example", 9000), minio("10.0.0.5", 9000), false, "nowhere.example", 1},
		{"OtherPort", minio("nowhere.example", 9000), minio("10.0.0.5", 9001), false, "", 0},
		{"OtherBucket", minio("nowhere.example", 9000), Config{Type: TypeS3, BucketName: "x", Host: "10.0.0.5", Port: 9000}, false, "", 0},
		{"AWS", Config{Type: TypeS3, BucketName: "b", Region: "r"}, Config{URL: "s3://b"}, true, "", 0},
		{"S3URL", minio("minio.internal", 9000), Config{URL: "s3://b?endpoint=http://10.0.0.5:9000"}, true, "", 1},
		{"Azure", azurite("127.0.0.1"), azurite("localhost"), true, "", 0},
		{"AzureName", azurite("azurite.internal"), azurite("10.0.0.5"), true, "", 1},
		{"SFTP", sftp("backup.example"), sftp("10.0.0.7"), true, "", 1},
		{"SFTPOtherPort", sftp("backup.example"), Config{Type: TypeSFTP, Server: "10.0.0.7", Port: 2222, Directory: "/d"}, false, "", 0},
		// Swift: the Keystone's host and port and the container; the
		// auth path and version, the endpoint type, a region or project
		// one side leaves out do not tell two clusters or accounts apart.
		{"SwiftAuthURL", swiftAt(ks, "3.0", "", nil), swiftAt("https://KEYSTONE.example:5000/v3/", "3.0", "", nil), true, "", 0},
		{"SwiftAuthVersion", swiftAt(ks, "3.0", "", nil), swiftAt("https://keystone.example:5000/v2.0", "", "", func(c *Config) { c.EndpointType = "internalURL" }), true, "", 0},
		{"SwiftDefaultPort", swiftAt("https://keystone.example/v3", "3.0", "", nil), swiftAt("https://keystone.example:443/v3", "3.0", "", nil), true, "", 0},
		{"SwiftOtherPort", swiftAt(ks, "3.0", "", nil), swiftAt("https://keystone.example:5001/v3", "3.0", "", nil), false, "", 0},
		{"SwiftAddress", swiftAt("https://keystone.internal:5000/v3", "3.0", "", nil), swiftAt("https://10.0.0.8:5000/v3", "3.0", "", nil), true, "", 1},
		{"SwiftRegionLeftOut", swiftAt(ks, "3.0", "", nil), swiftAt(ks, "3.0", "RegionOne", nil), true, "", 0},
		{"SwiftOtherRegion", swiftAt(ks, "3.0", "RegionOne", nil), swiftAt(ks, "3.0", "RegionTwo", nil), false, "", 0},
		{"SwiftOtherContainer", swiftAt(ks, "3.0", "", nil), swiftAt(ks, "3.0", "", func(c *Config) { c.ContainerName = "other" }), false, "", 0},
		{"SwiftTenantIsProject", swiftAt(ks, "3.0", "", func(c *Config) { c.TenantName = "db" }), swiftAt(ks, "3.0", "", func(c *Config) { c.ProjectName = "db" }), true, "", 0},
		{"SwiftTenantV2", swiftAt("https://keystone.example:5000/v2.0", "2.0", "", func(c *Config) { c.TenantName = "db" }), swiftAt(ks, "3.0", "", func(c *Config) { c.ProjectName = "db" }), true, "", 0},
		{"SwiftOtherProject", swiftAt(ks, "3.0", "", func(c *Config) { c.ProjectName = "db" }), swiftAt(ks, "3.0", "", func(c *Config) { c.ProjectName = "other" }), false, "", 0},
		{"SwiftProjectByID", swiftAt(ks, "3.0", "", func(c *Config) { c.ProjectName = "db" }), swiftAt(ks, "3.0", "", func(c *Config) { c.ProjectID = "0123abc" }), true, "", 0},
		{"SwiftSameID", swiftAt(ks, "3.0", "", func(c *Config) { c.ProjectName, c.ProjectID = "db", "0123abc" }), swiftAt(ks, "2.0", "", func(c *Config) { c.TenantName, c.TenantID = "renamed", "0123abc" }), true, "", 0},
		{"SwiftOtherID", swiftAt(ks, "3.0", "", func(c *Config) { c.ProjectID = "0123abc" }), swiftAt(ks, "3.0", "", func(c *Config) { c.ProjectID = "4567def" }), false, "", 0},
		{"SwiftV1Account", swiftAt("http://swift.example:8080/auth/v1.0", "1.0", "", func(c *Config) { c.User = "acct:u" }),
			swiftAt("http://swift.example:8080/auth/v1.0/", "1.0", "", func(c *Config) { c.User = "acct:other" }), true, "", 0},
		{"SwiftV1OtherAccount", swiftAt("http://swift.example:8080/auth/v1.0", "1.0", "", func(c *Config) { c.User = "acct:u" }),
			swiftAt("http://swift.example:8080/auth/v1.0", "1.0", "", func(c *Config) { c.User = "other:u" }), false, "", 0},
		// The server, not the prefix: local directories are on one.
		{"Local", Config{Type: TypeLocal, Directory: "/srv/a"}, Config{Type: TypeLocal, Directory: "/srv/b"}, true, "", 0},
		{"LocalAndGCS", Config{Type: TypeLocal, Directory: "/srv/a"}, Config{Type: TypeGoogle, BucketName: "b"}, false, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeResolver{addrs: map[string][]string{
				"minio.internal":    {"10.0.0.5"},
				"azurite.internal":  {"10.0.0.5"},
				"minio.test":        {"127.0.0.1"},
				"a.example":         {"10.0.0.5", "10.0.0.6"},
				"b.example":         {"10.0.0.6"},
				"c.example":         {"10.0.0.7"},
				"backup.example":    {"10.0.0.7"},
				"keystone.internal": {"10.0.0.8"},
			}}
			for _, ab := range [][2]Config{{tc.a, tc.b}, {tc.b, tc.a}} {
				r.lookups = nil
				same, err := SameServer(context.Background(), r, ab[0], ab[1])
				if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
					t.Errorf("err = %v, want one naming %q", err, tc.err)
				}
				if same != tc.same {
					t.Errorf("same = %v, want %v", same, tc.same)
				}
				if tc.err == "" && len(r.lookups) != tc.lookups {
					t.Errorf("lookups %v, want %d", r.lookups, tc.lookups)
				}
			}
		})
	}
}
