package command

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
)

// hoard retention refuses (exit 2), naming both sites, to run for a site
// when another site of the configuration stores its objects under the
// same keys or inside one of the site's folders in the same storage: the
// site's retention takes what lies in its basebackup_chunk/ folder for
// the chunk folders of interrupted backups, and deleted the other site's
// WAL and histories there once a day old. A site nested below the other
// outside its folders (s and s/t), or in another storage, is left alone,
// and so is the retention of the inner site, which lists only its own
// keys.
func TestRetention_RefusesNestedSite(t *testing.T) {
	root := t.TempDir()
	store := filepath.Join(root, "store")
	n := 0
	write := func(sites string) string {
		n++
		p := filepath.Join(root, fmt.Sprintf("c%d.json", n))
		js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {%s}}`, filepath.Join(root, "state"), sites)
		if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The node is a port nothing listens on: retention notes that the
	// system identifier is unknown and plans anyway.
	site := func(name, directory, prefix string) string {
		return fmt.Sprintf(`%q: {"prefix": %q, "nodes": [{"host": "127.0.0.1", "port": %d}],
			"object_storage": {"storage_type": "local", "directory": %q}}`, name, prefix, testio.FreePort(t), directory)
	}
	for _, tc := range []struct {
		name    string
		cfg     string
		site    string
		refused []string // what the error names; nil: not refused
	}{
		{"InChunkFolder", write(site("s", store, "s") + "," + site("t", store, "s/basebackup_chunk/t")), "s",
			[]string{"site s", "site t", "s/basebackup_chunk/t/", "basebackup_chunk/", "backup_sites.t.prefix"}},
		{"InXLog", write(site("s", store, "s") + "," + site("s/xlog", store, "")), "s",
			[]string{"site s", "site s/xlog", "xlog/"}},
		{"SameKeys", write(site("s", store, "s") + "," + site("u", store, "s/")), "s",
			[]string{"sites s and u", "the same keys"}},
		// An inactive site is a read-only view: under the same keys it is
		// this site's archive, and its own retention never deletes.
		{"SameKeysOtherInactive", write(site("s", store, "s") + "," + strings.Replace(site("u", store, "s/"), "{", `{"active": false, `, 1)), "s", nil},
		{"SameKeysThisInactive", write(strings.Replace(site("s", store, "s"), "{", `{"active": false, `, 1) + "," + site("u", store, "s/")), "s", nil},
		{"DirectoryJoined", write(site("s", store, "s") + "," + site("t", filepath.Join(store, "s", "basebackup"), "t")), "s",
			[]string{"site t", "basebackup/"}},
		{"InnerSite", write(site("s", store, "s") + "," + site("t", store, "s/basebackup_chunk/t")), "t", nil},
		{"BelowOutsideFolders", write(site("s", store, "s") + "," + site("s/t", store, "")), "s", nil},
		{"OtherStorage", write(site("s", store, "s") + "," + site("t", filepath.Join(root, "other"), "s/basebackup_chunk/t")), "s", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := runErr(t, "retention", "--dry-run", "--config", tc.cfg, "--site", tc.site)
			if tc.refused == nil {
				if code != 0 {
					t.Fatalf("hoard retention --site %s: exit %d: %s", tc.site, code, msg)
				}
				return
			}
			if code != ExitUsage {
				t.Fatalf("hoard retention --site %s: exit %d (%s), want %d", tc.site, code, msg, ExitUsage)
			}
			for _, want := range tc.refused {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not say %q", msg, want)
				}
			}
		})
	}
}

// hoard retention refuses a site whose folders hold another site's keys
// on the same S3 server named another way (localhost and 127.0.0.1), and
// one where whether the other site's host is the same server cannot be
// told (its name does not resolve): a false "same server" only refuses,
// a false "another server" lets the retention delete the other site's
// objects.
func TestRetention_RefusesNestedSiteOtherHost(t *testing.T) {
	root := t.TempDir()
	site := func(name, prefix, host string, port int) string {
		return fmt.Sprintf(`%q: {"prefix": %q, "nodes": [{"host": "127.0.0.1", "port": %d}],
			"object_storage": {"storage_type": "s3", "region": "r", "bucket_name": "b", "host": %q, "port": %d,
			"aws_access_key_id": "key-id", "aws_secret_access_key": "secret-key"}}`, name, prefix, testio.FreePort(t), host, port)
	}
	for _, tc := range []struct {
		name    string
		sites   string
		refused []string
	}{
		{"Loopback", site("s", "s", "localhost", 9) + "," + site("t", "s/basebackup_chunk/t", "127.0.0.1", 9), []string{"site t", "basebackup_chunk/"}},
		{"Unresolved", site("s", "s", "127.0.0.1", 9) + "," + site("t", "s/basebackup_chunk/t", "nowhere.invalid", 9), []string{"site t", "nowhere.invalid", "cannot tell"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(root, tc.name+".json")
			js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {%s}}`, filepath.Join(root, "state"), tc.sites)
			if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
				t.Fatal(err)
			}
			code, msg := runErr(t, "retention", "--dry-run", "--config", p, "--site", "s")
			if code != ExitUsage {
				t.Fatalf("hoard retention: exit %d (%s), want %d", code, msg, ExitUsage)
			}
			for _, want := range tc.refused {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not say %q", msg, want)
				}
			}
		})
	}
}

// The daemon runs a site whose retention would delete another site's
// objects (nestedSite), archiving its WAL and taking its backups, but
// with its retention refused (daemon.Site.RetentionRefused), naming both
// sites; the other site's retention runs. A reload that moves the other
// site away restarts the site without the refusal: it is part of the
// site's fingerprint.
func TestDaemonOptions_RetentionRefusedNested(t *testing.T) {
	site := func(name, prefix string) string {
		return fmt.Sprintf(`%q: {"prefix": %q, "active_backup_mode": "archive_command", "nodes": [{"host": "db"}],
			"object_storage": {"storage_type": "local", "directory": "/srv/hoard"}}`, name, prefix)
	}
	cfg := parseTestConfig(t, `{"backup_location": "/b", "backup_sites": {`+site("s", "s")+","+site("t", "s/basebackup_chunk/t")+`}}`)
	o, err := daemonOptions(testCLIContext(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for i, s := range o.Sites {
		byName[s.Name] = i
	}
	refused := o.Sites[byName["s"]].RetentionRefused
	if refused == nil || !strings.Contains(refused.Error(), "site t's keys") || !strings.Contains(refused.Error(), "site s") {
		t.Errorf("site s: retention refused %v, want an error naming sites s and t", refused)
	}
	if err := o.Sites[byName["t"]].RetentionRefused; err != nil {
		t.Errorf("site t: retention refused: %v", err)
	}
	moved := parseTestConfig(t, `{"backup_location": "/b", "backup_sites": {`+site("s", "s")+","+site("t", "t")+`}}`)
	o2, err := daemonOptions(testCLIContext(), moved)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range o2.Sites {
		if s.Name == "s" {
			if s.RetentionRefused != nil || s.Fingerprint == o.Sites[byName["s"]].Fingerprint {
				t.Errorf("site s once t moved: refused %v, fingerprint unchanged %v", s.RetentionRefused, s.Fingerprint == o.Sites[byName["s"]].Fingerprint)
			}
		}
	}
}

// hoard check fails the configuration step of a site whose keys another
// active site of the configuration shares or lies in (nestedSite): its
// retention is refused (hoard retention exits 2, the daemon's fails at
// each run), which check said nothing of.
func TestCheck_NestedSite(t *testing.T) {
	root := t.TempDir()
	store := filepath.Join(root, "store")
	if err := os.MkdirAll(store, 0o700); err != nil {
		t.Fatal(err)
	}
	site := func(name, prefix string) string {
		return fmt.Sprintf(`%q: {"prefix": %q, "active_backup_mode": "archive_command", "nodes": [{"host": "127.0.0.1", "port": %d}],
			"object_storage": {"storage_type": "local", "directory": %q}}`, name, prefix, testio.FreePort(t), store)
	}
	p := filepath.Join(root, "hoard.json")
	js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {%s, %s}}`, filepath.Join(root, "state"), site("a", "shared"), site("b", "shared"))
	if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := runOutput(t, "check", "--config", p, "--site", "a")
	if code != ExitFailure {
		t.Errorf("check: exit %d, want %d\n%s", code, ExitFailure, out)
	}
	wantLines(t, out, "FAILED   configuration: sites a and b store their objects under the same keys ("+store+"/shared/) in the same storage")
	if !strings.Contains(out, "backup_sites.<site>.prefix") {
		t.Errorf("the line does not say which key to change:\n%s", out)
	}
}
