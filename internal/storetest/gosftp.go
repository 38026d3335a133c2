package storetest

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/hoardbackup/hoard/storage"
)

// GoSFTP starts the SFTP server of github.com/pkg/sftp (its Server, behind
// golang.org/x/crypto/ssh) on a loopback port, in the test's process, and
// returns the config of a store in a temp dir on it, as SFTP does for
// OpenSSH. It is the other kind of server hoard meets: its SSH_FXP_RENAME
// is rename(2), which replaces an existing name (as paramiko's default
// server does), where OpenSSH's does link(2) then unlink(2) and the
// protocol's draft refuses. It offers posix-rename@openssh.com and
// hardlink@openssh.com, not fsync@openssh.com. The server stops with the
// test.
func GoSFTP(t testing.TB) SFTPServer {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no storage servers")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sftp: current user: %v", err)
	}
	dir := t.TempDir()
	hostPub := WriteKey(t, filepath.Join(dir, "host_ed25519"))
	clientPub := WriteKey(t, filepath.Join(dir, "client_ed25519"))
	pemBytes, err := os.ReadFile(filepath.Join(dir, "host_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if !bytes.Equal(key.Marshal(), clientPub.Marshal()) {
				return nil, errors.New("unknown client key")
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &goSFTPServer{cfg: cfg, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept(ln)
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})

	addr := ln.Addr().(*net.TCPAddr)
	knownHosts := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr.String())}, hostPub) + "\n"
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	storageDir := filepath.Join(dir, "storage")
	if err := os.Mkdir(storageDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return SFTPServer{
		Config: storage.Config{
			Type:           "sftp",
			Server:         "127.0.0.1",
			Port:           addr.Port,
			Username:       u.Username,
			PrivateKey:     filepath.Join(dir, "client_ed25519"),
			KnownHostsFile: knownHosts,
			Directory:      storageDir,
		},
		HostKey: hostPub,
	}
}

// goSFTPServer serves SSH connections whose sessions ask for the sftp
// subsystem. Every goroutine it starts is counted in wg; closing the
// listener and the connections ends them all.
type goSFTPServer struct {
	cfg    *ssh.ServerConfig
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

func (s *goSFTPServer) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *goSFTPServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs)
	}()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		s.wg.Add(1)
		go s.session(ch, chReqs)
	}
}

// session starts the sftp subsystem when asked, and ends with the channel.
func (s *goSFTPServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer s.wg.Done()
	defer ch.Close()
	var served sync.WaitGroup
	defer served.Wait()
	for req := range reqs {
		// The payload of a subsystem request is the name as an SSH
		// string: a 4-byte length, then "sftp".
		ok := req.Type == "subsystem" && len(req.Payload) > 4 && string(req.Payload[4:]) == "sftp"
		_ = req.Reply(ok, nil)
		if !ok {
			continue
		}
		srv, err := sftp.NewServer(ch)
		if err != nil {
			return
		}
		served.Add(1)
		go func() {
			defer served.Done()
			_ = srv.Serve()
			srv.Close()
		}()
	}
}
