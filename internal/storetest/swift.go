package storetest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// Swift's all-in-one in tests: tempauth's user and key.
const (
	SwiftUser = "test:tester"
	SwiftKey  = "testing"
)

// swiftDevices maps the AuthURL of each Swift started to its device
// directory, for SwiftDamage.
var swiftDevices sync.Map

// swiftBinaries are what Swift needs: Debian's swift-proxy, swift-account,
// swift-container and swift-object packages, and memcached, where tempauth
// keeps its tokens.
var swiftBinaries = []string{
	"/usr/bin/swift-proxy-server", "/usr/bin/swift-account-server",
	"/usr/bin/swift-container-server", "/usr/bin/swift-object-server", "/usr/bin/memcached",
}

// Swift starts an OpenStack Swift all-in-one on loopback ports (one
// replica of the account, container and object rings on one device in a
// temp dir, a proxy with tempauth, memcached for tempauth's tokens) and
// returns the config of a container on it, with 5 MiB segments so that
// tests exercise large objects with small ones. The object server keeps
// metadata in extended attributes: the temp dir's filesystem must have
// user xattrs (ext4, xfs, tmpfs).
func Swift(t testing.TB) storage.Config {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no storage servers")
	}
	for _, b := range swiftBinaries {
		if _, err := os.Stat(b); err != nil {
			testio.Unavailable(t, "%s not installed (run scripts/deps.sh): %v", b, err)
		}
	}
	dir := t.TempDir()
	dev := filepath.Join(dir, "srv", "d1")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(dev, "xattr-probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(probe, "user.swift.metadata", []byte("x"), 0); err != nil {
		testio.Unavailable(t, "swift: %s has no user xattrs, which Swift's object server needs (set TMPDIR to ext4, xfs or tmpfs): %v", dir, err)
	}
	_ = os.Remove(probe)
	u, err := user.Current()
	if err != nil {
		t.Fatalf("swift: current user: %v", err)
	}
	names := []string{"proxy", "account", "container", "object", "memcached"}
	var proxy string
	testio.StartServer(t, len(names), func(a *testio.Attempt) error {
		ports := map[string]int{}
		for i, s := range names {
			ports[s] = a.Ports[i]
		}
		write := func(name, text string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("swift.conf", "[swift-hash]\nswift_hash_path_suffix = hoardtest\nswift_hash_path_prefix = hoardtest\n"+
			"[storage-policy:0]\nname = Policy-0\ndefault = yes\n")
		common := fmt.Sprintf("[DEFAULT]\nbind_ip = 127.0.0.1\nworkers = 0\nuser = %s\nswift_dir = %s\nlog_level = WARNING\n", u.Username, dir)
		for _, s := range []string{"account", "container", "object"} {
			write(s+"-server.conf", common+fmt.Sprintf("bind_port = %d\ndevices = %s\nmount_check = false\n"+
				"[pipeline:main]\npipeline = %s-server\n[app:%s-server]\nuse = egg:swift#%s\n"+
				"[%s-replicator]\n[%s-updater]\n[%s-auditor]\n", ports[s], filepath.Dir(dev), s, s, s, s, s, s))
		}
		write("proxy-server.conf", common+fmt.Sprintf("bind_port = %d\n"+
			"[pipeline:main]\npipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats tempauth copy slo dlo proxy-logging proxy-server\n"+
			"[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n"+
			"[filter:catch_errors]\nuse = egg:swift#catch_errors\n[filter:gatekeeper]\nuse = egg:swift#gatekeeper\n"+
			"[filter:healthcheck]\nuse = egg:swift#healthcheck\n[filter:proxy-logging]\nuse = egg:swift#proxy_logging\n"+
			"[filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:%d\n"+
			"[filter:listing_formats]\nuse = egg:swift#listing_formats\n"+
			"[filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = %s .admin\n"+
			"[filter:copy]\nuse = egg:swift#copy\n[filter:slo]\nuse = egg:swift#slo\n[filter:dlo]\nuse = egg:swift#dlo\n",
			ports["proxy"], ports["memcached"], SwiftKey))
		// The rings, built with Swift's own RingBuilder (what swift-ring-builder
		// runs) in one interpreter rather than nine swift-ring-builder calls.
		ring := exec.Command("/usr/bin/python3", "-c", `
import sys
from swift.common.ring import RingBuilder
d = sys.argv[1]
for name, port in zip(("account", "container", "object"), sys.argv[2:]):
    b = RingBuilder(6, 1, 1)
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port), "device": "d1", "weight": 1.0})
    b.rebalance()
    b.get_ring().save("%s/%s.ring.gz" % (d, name))
`, dir, strconv.Itoa(ports["account"]), strconv.Itoa(ports["container"]), strconv.Itoa(ports["object"]))
		if out, err := ring.CombinedOutput(); err != nil {
			t.Fatalf("swift: build rings: %v\n%s", err, out)
		}
		memcached := a.Start("memcached", nil, "/usr/bin/memcached", "-l", "127.0.0.1", "-p", strconv.Itoa(ports["memcached"]), "-U", "0", "-u", u.Username)
		if err := memcached.Listen(ports["memcached"], time.Minute, nil); err != nil {
			return err
		}
		// Python servers start slowly on a loaded machine: wait longer than for
		// the Go servers.
		proxy = fmt.Sprintf("http://127.0.0.1:%d", ports["proxy"])
		for _, s := range []string{"account", "container", "object", "proxy"} {
			p := a.Start("swift-"+s+"-server", nil, "/usr/bin/swift-"+s+"-server", filepath.Join(dir, s+"-server.conf"))
			url := fmt.Sprintf("http://127.0.0.1:%d/", ports[s])
			if s == "proxy" {
				url = proxy + "/healthcheck"
			}
			if err := p.Listen(ports[s], 5*time.Minute, answers(url)); err != nil {
				return err
			}
		}
		return nil
	})
	swiftDevices.Store(proxy+"/auth/v1.0", dev)
	return storage.Config{
		Type:          "swift",
		User:          SwiftUser,
		Key:           SwiftKey,
		AuthURL:       proxy + "/auth/v1.0",
		AuthVersion:   "1.0",
		ContainerName: "hoard-test",
		SegmentSize:   5 << 20,
	}
}

// SwiftDamage flips one bit in the middle of the data file in which the
// object server of the Swift that Swift started for c keeps object name
// (the prefix included) of c's container, leaving its metadata, the ETag
// among it: a disk that rots under Swift. Swift sends such an object
// whole with the ETag it stored, then quarantines it.
func SwiftDamage(t testing.TB, c storage.Config, name string) {
	t.Helper()
	dev, ok := swiftDevices.Load(c.AuthURL)
	if !ok {
		t.Fatalf("swift: %s was not started by storetest.Swift", c.AuthURL)
	}
	files, err := filepath.Glob(filepath.Join(dev.(string), "objects", "*", "*", "*", "*.data"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("/" + c.ContainerName + "/" + name)
	for _, f := range files {
		buf := make([]byte, 64<<10)
		n, err := unix.Getxattr(f, "user.swift.metadata", buf)
		if err != nil || !bytes.Contains(buf[:n], want) {
			continue
		}
		// Rewritten in place: the same inode, so the xattrs (the ETag) stay.
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0x40
		if err := os.WriteFile(f, data, 0); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("swift: no data file of %s under %s", want, dev)
}
