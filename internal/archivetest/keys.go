package archivetest

import (
	"crypto/rsa"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
)

// AddKeys gives c a new key pair (key id k1) and makes it require
// encryption: a site with keys, whose history files are bound to their
// system.
func AddKeys(t testing.TB, c *archive.Codec) {
	t.Helper()
	k, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	c.KeyID, c.PublicKey, c.RequireEncryption = "k1", &k.PublicKey, true
	c.PrivateKeys = map[string]*rsa.PrivateKey{"k1": k}
}
