package daemon

import (
	"net"
	"os"
	"strings"
)

// States the daemon reports to systemd (sd_notify(3)).
const (
	NotifyReady     = "READY=1"
	NotifyReloading = "RELOADING=1"
	NotifyStopping  = "STOPPING=1"
)

// Notify sends state to systemd's notification socket when the process
// runs under systemd with Type=notify (sd_notify(3): $NOTIFY_SOCKET, a
// leading "@" naming an abstract socket); otherwise it does nothing. The
// caller logs an error: the service manager will time out waiting.
func Notify(state string) error {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil
	}
	if strings.HasPrefix(sock, "@") {
		sock = "\x00" + sock[1:] // abstract socket namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
