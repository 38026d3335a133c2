package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
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
