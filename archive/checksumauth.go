package archive

import (
	"crypto/hmac"
	"encoding/hex"
	"strconv"

	"github.com/hoardbackup/hoard/storage"
)

// MetaChecksumFailures is the metadata key of the number of data pages
// whose checksums failed while a backup was taken (basebackup writes it;
// the control object's manifest has the files and blocks). It is not
// one of backupMACKeys: backups signed before it existed record it, and
// adding it there would make their metadata stop authenticating. So it
// has an HMAC of its own, MetaChecksumFailuresMAC.
const MetaChecksumFailures = "hoard-checksum-failures"

// MetaChecksumFailuresMAC is the metadata key of the HMAC of a backup's
// MetaChecksumFailures, in hex: keyed as MetaBackupMAC is (from the
// public key of the backup's key id), over checksumMACLabel, the
// backup's name, the count and the key id.
const MetaChecksumFailuresMAC = "hoard-checksum-failures-hmac"

// checksumMACLabel is the HKDF info of the checksum failure count's HMAC
// key: another label than backupMACLabel, so that neither HMAC stands
// for the other.
const checksumMACLabel = "hoard backup checksum failures v1"

var checksumMACKeys = []string{MetaChecksumFailures, MetaEncryptionKeyID}

// SignChecksumFailures adds MetaChecksumFailuresMAC to md, the metadata
// of backup name's control object c is about to store, when md records
// MetaChecksumFailures. In a site without keys it does nothing.
func (c *Codec) SignChecksumFailures(name string, md storage.Metadata) error {
	if _, ok := md[MetaChecksumFailures]; !ok || !c.signs() {
		return nil
	}
	key, err := publicMACKey(c.PublicKey, checksumMACLabel)
	if err != nil {
		return err
	}
	md[MetaEncryptionKeyID] = c.KeyID
	md[MetaChecksumFailuresMAC] = hex.EncodeToString(macNamed(key, checksumMACLabel, BackupName(name), md, checksumMACKeys))
	return nil
}

// ChecksumFailures returns the number of data pages b's metadata records
// as failing their checksums when it was taken, whether it records one
// (a number), and whether to believe it: in a site without keys, as all
// of its metadata (anyone who can write the bucket can write any of it
// there); in a site with keys, only when b's metadata authenticates and
// MetaChecksumFailuresMAC verifies, so that a count planted or altered
// by a writer of the bucket is not taken for fact. A backup that hoard
// stored before it signed the count is not believed either: its control
// object's record (what hoard verify reads) is.
func (c *Codec) ChecksumFailures(b *BackupInfo) (n int64, recorded, trusted bool) {
	v, ok := b.Metadata[MetaChecksumFailures]
	if !ok {
		return 0, false, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	if c == nil || !c.hasKeys() {
		return n, true, true
	}
	return n, true, b.Auth == AuthOK && c.checksumMACValid(b.Name, b.Metadata)
}

// checksumMACValid reports whether md's MetaChecksumFailuresMAC verifies
// for backup name with the public key c holds for md's key id.
func (c *Codec) checksumMACValid(name string, md storage.Metadata) bool {
	got, err := hex.DecodeString(md[MetaChecksumFailuresMAC])
	pub := c.publicKeyFor(md[MetaEncryptionKeyID])
	if err != nil || len(got) == 0 || pub == nil {
		return false
	}
	key, err := publicMACKey(pub, checksumMACLabel)
	return err == nil && hmac.Equal(got, macNamed(key, checksumMACLabel, BackupName(name), md, checksumMACKeys))
}
