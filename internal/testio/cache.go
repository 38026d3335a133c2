package testio

import "os"

// CacheDir returns the folder of the servers and PostgreSQL builds the
// tests run (scripts/deps.sh installs them): $HOARD_CACHE, by default
// /var/cache/hoard.
func CacheDir() string {
	if d := os.Getenv("HOARD_CACHE"); d != "" {
		return d
	}
	return "/var/cache/hoard"
}
