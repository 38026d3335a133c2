package storetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// SFTPServer is an OpenSSH server started for a test.
type SFTPServer struct {
	Config storage.Config // reaches the server as the current user, with a key, checking the host key in known_hosts
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
}

// SFTP starts OpenSSH's sshd (Debian's openssh-server) on a loopback port,
// in the foreground, with a throwaway host key and a throwaway client key
// authorized for the current user, and returns the config of a store in a
// temp dir on it: private_key the client key, known_hosts_file a file that
// lists the host key. Password and keyboard-interactive logins are off.
//
// sshd running as root needs its privilege separation directory, /run/sshd,
// which a system's own sshd service creates; SFTP creates it when missing.
func SFTP(t testing.TB) SFTPServer {
	t.Helper()
	return SFTPWithout(t)
}

// SFTPWithout is SFTP with the server's SFTP requests named in denied
// (sftp-server -Q requests lists them) refused: internal-sftp's -P. For
// an extension such as posix-rename or hardlink, OpenSSH's server then
// leaves it out of the extensions it offers (seen with OpenSSH 9.2), as
// a server that lacks it does, so a client takes its path without it.
func SFTPWithout(t testing.TB, denied ...string) SFTPServer {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no storage servers")
	}
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		testio.Unavailable(t, "%s not installed (run scripts/deps.sh): %v", sshd, err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sftp: current user: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sftp: sshd's privilege separation directory: %v", err)
		}
	}
	dir := t.TempDir()
	hostPub := WriteKey(t, filepath.Join(dir, "host_ed25519"))
	clientPub := WriteKey(t, filepath.Join(dir, "client_ed25519"))
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "sshd_config")
	subsystem := "internal-sftp"
	if len(denied) > 0 {
		subsystem += " -P " + strings.Join(denied, ",")
	}
	port := testio.StartServer(t, 1, func(a *testio.Attempt) error {
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowUsers %s
Subsystem sftp %s
LogLevel ERROR
`, a.Ports[0], filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"), u.Username, subsystem)), 0o600); err != nil {
			t.Fatal(err)
		}
		return a.Start("sshd", nil, sshd, "-D", "-e", "-f", conf).Listen(a.Ports[0], time.Minute, nil)
	})[0]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	knownHosts := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostPub) + "\n"
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	storageDir := filepath.Join(dir, "storage")
	if err := os.Mkdir(storageDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if len(denied) > 0 {
		checkNotOffered(t, addr, u.Username, filepath.Join(dir, "client_ed25519"), hostPub, denied)
	}
	return SFTPServer{
		Config: storage.Config{
			Type:           "sftp",
			Server:         "127.0.0.1",
			Port:           port,
			Username:       u.Username,
			PrivateKey:     filepath.Join(dir, "client_ed25519"),
			KnownHostsFile: knownHosts,
			Directory:      storageDir,
		},
		HostKey: hostPub,
	}
}

// WriteKey writes a new ed25519 private key in OpenSSH's format to name and
// returns its public key.
func WriteKey(t testing.TB, name string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sshPub
}

// checkNotOffered fails t when the SFTP server at addr still offers one
// of the extensions named (<name>@openssh.com): a test meant for a server
// without it would then take the path with it.
func checkNotOffered(t testing.TB, addr, user, keyFile string, hostKey ssh.PublicKey, names []string) {
	t.Helper()
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: time.Minute})
	if err != nil {
		t.Fatalf("sftp: connect to check its extensions: %v", err)
	}
	defer conn.Close()
	c, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatalf("sftp: start a session to check its extensions: %v", err)
	}
	defer c.Close()
	for _, n := range names {
		if _, ok := c.HasExtension(n + "@openssh.com"); ok {
			t.Fatalf("sftp: the server still offers %s@openssh.com with the %s request denied", n, n)
		}
	}
}
