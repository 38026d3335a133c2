package storage_test

import (
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// sftpThroughProxy starts a proxy in front of srv and returns the server's
// configuration pointed at the proxy, pinning the server's key.
func sftpThroughProxy(t *testing.T, srv storetest.SFTPServer) (storage.Config, *storetest.Proxy) {
	t.Helper()
	return storetest.Proxied(t, srv.Config)
}
