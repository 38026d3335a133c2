package command

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/storage"
)

// uploadRateFlag and downloadRateFlag override a site's upload_rate_limit
// and download_rate_limit.
var (
	uploadRateFlag = &cli.StringFlag{Name: "upload-rate-limit",
		Usage: "send at most `RATE` bytes per second to the storage, with an optional K, M or G (powers of 1024); 0 = unlimited (default: the site's upload_rate_limit)"}
	downloadRateFlag = &cli.StringFlag{Name: "download-rate-limit",
		Usage: "read at most `RATE` bytes per second from the storage, with an optional K, M or G (powers of 1024); 0 = unlimited (default: the site's download_rate_limit)"}
)

// siteRateLimits returns a site's configured rate limits.
func siteRateLimits(site *config.Site) storage.RateLimits {
	return storage.RateLimits{Upload: site.UploadRateLimit, Download: site.DownloadRateLimit}
}

// rateLimits returns a site's rate limits, with the command's flags
// (when it has them and they are given) in place of the configuration's.
func rateLimits(c *cli.Context, site *config.Site) (storage.RateLimits, error) {
	l := siteRateLimits(site)
	for _, f := range []struct {
		name string
		dst  *int64
	}{{uploadRateFlag.Name, &l.Upload}, {downloadRateFlag.Name, &l.Download}} {
		if !c.IsSet(f.name) {
			continue
		}
		n, err := parseRate(c.String(f.name))
		if err != nil {
			return l, usagef("give bytes per second, such as 10M", "--%s: %v", f.name, err)
		}
		*f.dst = n
	}
	return l, nil
}

// parseRate reads a byte count with an optional K, M or G suffix (KiB,
// MiB and GiB, and the same with "/s", are accepted too).
func parseRate(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	t = strings.TrimSuffix(strings.TrimSuffix(t, "iB"), "B")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a rate in bytes per second", s)
	}
	return n * mult, nil
}
