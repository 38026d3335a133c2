package command

import (
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hoardbackup/hoard/restore"
)

// defaultPort is PostgreSQL's port when its configuration sets none.
const defaultPort = 5432

// socketDirs are where PostgreSQL servers on this host usually put their
// Unix sockets: the default unix_socket_directories (/tmp), and Debian's
// and Red Hat's packages' (/var/run/postgresql, a link to /run/postgresql
// on current systems).
var socketDirs = []string{"/tmp", "/run/postgresql", "/var/run/postgresql"}

// probeTimeout bounds each connection attempt of portInUse: a listener on
// this host answers at once.
const probeTimeout = time.Second

// restoredPort returns the port the restored directory's configuration
// sets (postgresql.auto.conf over postgresql.conf), or defaultPort; ok is
// false when the value is no port number, and nothing is said of it
// (PostgreSQL will report it).
func restoredPort(dir string) (port int, ok bool) {
	v := confSetting(dir, "port")
	if v == "" {
		return defaultPort, true
	}
	port, err := strconv.Atoi(v)
	return port, err == nil && port > 0 && port < 65536
}

// portInUse returns what listens on port on this host: a TCP listener on
// localhost (IPv4 or IPv6) or a Unix socket .s.PGSQL.<port> in socketDirs
// that accepts a connection; "" when nothing does. A socket file nobody
// listens on is left by a server that crashed, and PostgreSQL removes it
// when it starts, so it does not count. pg_ctl start fails on a port in
// use: "could not bind IPv4 address", or, for the socket, "lock file
// .s.PGSQL.<port>.lock already exists".
func portInUse(port int) string {
	p := strconv.Itoa(port)
	for _, host := range []string{"127.0.0.1", "::1"} {
		if accepts("tcp", net.JoinHostPort(host, p)) {
			return net.JoinHostPort(host, p)
		}
	}
	for _, dir := range socketDirs {
		sock := filepath.Join(dir, ".s.PGSQL."+p)
		if accepts("unix", sock) {
			return sock
		}
	}
	return ""
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

// freePortAfter returns the first port after port that nothing on this
// host listens on (portInUse) and that can be bound on localhost now, or 0
// when none of the next 100 is. Another process may take it before
// PostgreSQL starts: pg_ctl then says so.
func freePortAfter(port int) int {
	for p := port + 1; p <= port+100 && p < 65536; p++ {
		if portInUse(p) != "" {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	return 0
}

// startCommand returns the pg_ctl command that starts the restored
// cluster in dir, and a note to print before it when its port is in use
// on this host (the original cluster's, most often): then the command
// starts it on a free port with -o "-p PORT".
func startCommand(dir string) (cmd, note string) {
	cmd = "pg_ctl -D " + restore.ShellQuote(dir) + " start"
	port, ok := restoredPort(dir)
	if !ok {
		return cmd, ""
	}
	by := portInUse(port)
	if by == "" {
		return cmd, ""
	}
	note = "The restored cluster's port " + strconv.Itoa(port) + " is in use on this host (" + by + " accepts connections)"
	free := freePortAfter(port)
	if free == 0 {
		return cmd, note + ": start it on a free port with -o \"-p PORT\", or stop what listens there.\n"
	}
	p := strconv.Itoa(free)
	return "pg_ctl -D " + restore.ShellQuote(dir) + " -o \"-p " + p + "\" start",
		note + ": this starts it on port " + p + ", free now (set port in postgresql.auto.conf to keep it).\n"
}
