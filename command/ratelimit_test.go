package command

import (
	"errors"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/storage"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"0", 0}, {"1000", 1000}, {"10K", 10 << 10}, {"10k", 10 << 10}, {"5M", 5 << 20}, {"5MiB", 5 << 20}, {"1G", 1 << 30}, {"64MB/s", 64 << 20}} {
		if got, err := parseRate(tc.in); err != nil || got != tc.want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "ten", "-1", "1T", "1.5M", "M"} {
		if got, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) = %d, want an error", in, got)
		}
	}
}

// The flags replace the site's configured limits only when given.
func TestRateLimits_Flags(t *testing.T) {
	site := &config.Site{UploadRateLimit: 5, DownloadRateLimit: 7}
	for _, tc := range []struct {
		args []string
		want storage.RateLimits
		err  bool
	}{
		{nil, storage.RateLimits{Upload: 5, Download: 7}, false},
		{[]string{"--upload-rate-limit", "1M"}, storage.RateLimits{Upload: 1 << 20, Download: 7}, false},
		{[]string{"--download-rate-limit", "0"}, storage.RateLimits{Upload: 5}, false},
		{[]string{"--upload-rate-limit", "fast"}, storage.RateLimits{}, true},
	} {
		var got storage.RateLimits
		var err error
		app := &cli.App{Flags: []cli.Flag{uploadRateFlag, downloadRateFlag}, Action: func(c *cli.Context) error {
			got, err = rateLimits(c, site)
			return nil
		}}
		if rerr := app.Run(append([]string{"hoard"}, tc.args...)); rerr != nil {
			t.Fatal(rerr)
		}
		if tc.err {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Errorf("%v: err = %v, want a usage error", tc.args, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
}
