package command

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hoardbackup/hoard/restore"
)

// defaultPort is PostgreSQL's port when its configuration sets none.
const defaultPort = 5432

// socketDirs are where a server puts its Unix sockets when its
// configuration sets no unix_socket_directories: the build decides, /tmp
// for PostgreSQL's own, /var/run/postgresql (a link to /run/postgresql on
// current systems) for Debian's and Red Hat's packages. Which build will
// start the restored cluster is not known here, so all are probed.
var socketDirs = []string{"/tmp", "/run/postgresql", "/var/run/postgresql"}

// probeTimeout bounds each name lookup and connection attempt of the
// probes: a listener on this host answers at once.
const probeTimeout = time.Second

// listeners is where a restored cluster would listen, from its
// configuration (restore.ServerSettings).
type listeners struct {
	port int
	// hosts are listen_addresses' entries: "*" for every address, none
	// for no TCP at all.
	hosts []string
	// sockets are unix_socket_directories' entries, relative ones already
	// under the data directory; "@" starts an abstract socket's (Linux).
	sockets []string
}

// restoredListeners returns where the data directory dir would listen
// with settings, PostgreSQL's defaults for what they leave unset
// (listen_addresses 'localhost', port 5432, the sockets in socketDirs);
// ok is false when port is no port number, and nothing is said of it
// (PostgreSQL will report it).
func restoredListeners(dir string, settings map[string]string) (l listeners, ok bool) {
	l.port = defaultPort
	if v, set := settings["port"]; set {
		p, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || p <= 0 || p >= 65536 {
			return l, false
		}
		l.port = p
	}
	l.hosts = []string{"localhost"}
	if v, set := settings["listen_addresses"]; set {
		l.hosts = splitGUCList(v)
	}
	l.sockets = socketDirs
	if v, set := settings["unix_socket_directories"]; set {
		l.sockets = nil
		for _, d := range splitGUCList(v) {
			if !strings.HasPrefix(d, "@") && !filepath.IsAbs(d) {
				// The postmaster runs in its data directory.
				d = filepath.Join(dir, d)
			}
			l.sockets = append(l.sockets, d)
		}
	}
	return l, true
}

// splitGUCList splits a comma-separated list setting as PostgreSQL does
// (SplitGUCList, SplitDirectoriesString): entries trimmed of white space,
// an entry in double quotes taken as written (two double quotes for one). Empty
// entries are left out: an empty string is the empty list.
func splitGUCList(s string) []string {
	var out []string
	for _, e := range splitOutsideQuotes(s) {
		e = strings.TrimSpace(e)
		if len(e) >= 2 && e[0] == '"' && e[len(e)-1] == '"' {
			e = strings.ReplaceAll(e[1:len(e)-1], `""`, `"`)
		}
		if e != "" {
			out = append(out, e)
		}
	}
	return out
}

// splitOutsideQuotes splits s at the commas outside double quotes.
func splitOutsideQuotes(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// inUse returns what keeps the cluster from listening on port on this
// host: an address of listen_addresses that another socket holds
// (PostgreSQL: "could not bind IPv4 address ...: Address already in
// use"), or a Unix socket .s.PGSQL.<port> in its socket directories that
// accepts a connection (a running server's: "lock file ... already
// exists"); "" when none does. A socket file nobody listens on is left by
// a server that crashed, and PostgreSQL removes it when it starts, so it
// does not count.
func (l listeners) inUse(port int) string {
	p := strconv.Itoa(port)
	for _, addr := range l.tcpAddrs() {
		if bindTaken(net.JoinHostPort(addr, p)) {
			return net.JoinHostPort(addr, p) + " is bound by another process"
		}
	}
	for _, dir := range l.sockets {
		sock := dir + "/.s.PGSQL." + p
		if accepts("unix", sock) {
			return sock + " accepts connections"
		}
	}
	return ""
}

// tcpAddrs are the addresses the cluster would bind: each host of
// listen_addresses resolved, as the postmaster does with getaddrinfo, and
// for "*" the IPv4 and IPv6 wildcards. A name that does not resolve gives
// none (PostgreSQL warns of it and binds the others).
func (l listeners) tcpAddrs() []string {
	var addrs []string
	for _, h := range l.hosts {
		if h == "*" {
			addrs = append(addrs, "0.0.0.0", "::")
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		resolved, err := net.DefaultResolver.LookupHost(ctx, h)
		cancel()
		if err == nil {
			addrs = append(addrs, resolved...)
		}
	}
	return addrs
}

// bindTaken reports whether binding addr fails because the address is in
// use. The trial bind asks the kernel what PostgreSQL's own bind would
// meet (both set SO_REUSEADDR): a listener on the same address, or on a
// wildcard address covering it, or, for a wildcard, on any address. An
// address this host does not have fails otherwise and does not count.
func bindTaken(addr string) bool {
	network := "tcp4"
	if host, _, _ := net.SplitHostPort(addr); strings.Contains(host, ":") {
		// tcp6 binds the IPv6 wildcard alone (IPV6_V6ONLY), as PostgreSQL does.
		network = "tcp6"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	ln.Close()
	return false
}

// accepts reports whether something listening at addr accepts a
// connection.
func accepts(network, addr string) bool {
	c, err := net.DialTimeout(network, addr, probeTimeout)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// freePortAfter returns the first port after the configured one where
// nothing on this host keeps the cluster from listening (inUse), or 0
// when none of the next 100 is. Another process may take it before
// PostgreSQL starts: pg_ctl then says so.
func (l listeners) freePortAfter() int {
	for p := l.port + 1; p <= l.port+100 && p < 65536; p++ {
		if l.inUse(p) == "" {
			return p
		}
	}
	return 0
}

// startCommand returns the pg_ctl command that starts the restored
// cluster in dir, whose configuration is settings, and the notes to print
// before it: one for each socket directory the configuration names that
// this host lacks (missingSocketDirs), and one when its port is in use on
// this host where it would listen (the original cluster's, most often):
// then the command starts it on a free port with -o "-p PORT". Nil
// settings (a configuration that cannot be read), or a port that a
// postgresql.conf still to be copied sets (portFromCopy), give the plain
// command.
func startCommand(dir string, settings map[string]string) (cmd string, notes []string) {
	cmd = "pg_ctl -D " + restore.ShellQuote(dir) + " start"
	l, ok := restoredListeners(dir, settings)
	if settings == nil || !ok {
		return cmd, nil
	}
	if _, set := settings["unix_socket_directories"]; set {
		notes = missingSocketDirs(l.sockets)
	}
	if portFromCopy(dir, settings) {
		// The port is the copied postgresql.conf's, not known here:
		// printConfigOutside says what to set.
		return cmd, notes
	}
	by := l.inUse(l.port)
	if by == "" {
		return cmd, notes
	}
	note := "The restored cluster's port " + strconv.Itoa(l.port) + " is in use on this host (" + by + ")"
	free := l.freePortAfter()
	if free == 0 {
		return cmd, append(notes, note+": start it on a free port with -o \"-p PORT\", or stop what listens there.")
	}
	p := strconv.Itoa(free)
	return "pg_ctl -D " + restore.ShellQuote(dir) + " -o \"-p " + p + "\" start",
		append(notes, note+": this starts it on port "+p+", free now where it listens (set port in postgresql.auto.conf to keep it).")
}

// missingSocketDirs returns a note for each of the socket directories
// (unix_socket_directories, as set in the restored configuration) that
// does not exist on this host: the original host's, restored elsewhere.
// The postmaster creates a lock file in each one and stops at start when
// it cannot (CreateSocketLockFile, "could not create lock file"); it
// creates no directory. An abstract socket ("@") has no directory.
func missingSocketDirs(sockets []string) []string {
	var notes []string
	for _, d := range sockets {
		if strings.HasPrefix(d, "@") {
			continue
		}
		if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
			notes = append(notes, "unix_socket_directories names "+d+", which does not exist on this host: PostgreSQL would stop at start "+
				"(could not create lock file). Create it, writable by the server's user, or start it with -o \"-k DIR\" naming one that exists.")
		}
	}
	return notes
}
