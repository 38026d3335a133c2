package archive

import (
	"crypto/rsa"
	"maps"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// signedMetadata returns the metadata of backup name as hoard stores it in
// a site whose key id k1 has key's public half.
func signedMetadata(t testing.TB, key *rsa.PrivateKey, name string) storage.Metadata {
	t.Helper()
	md := pghoardBackup(t, name, "000000010000000000000005").ToMetadata()
	c := &Codec{KeyID: "k1", PublicKey: &key.PublicKey}
	if err := c.SignBackup(name, md); err != nil {
		t.Fatal(err)
	}
	md[MetaCompressionAlgorithm] = "snappy" // the codec's keys, not signed
	return md
}

func TestCodec_BackupAuth(t *testing.T) {
	key, other := testKey(t), testKey3072(t)
	const name = "2024-03-09_10-00_0"
	pub := &Codec{KeyID: "k1", PublicKey: &key.PublicKey}
	priv := &Codec{KeyID: "k1", PrivateKeys: map[string]*rsa.PrivateKey{"k1": key}}
	tests := []struct {
		name  string
		codec *Codec
		as    string // the name the metadata is read under
		edit  func(storage.Metadata)
		want  BackupAuth
	}{
		{name: "OK", codec: pub, as: name, want: AuthOK},
		{name: "OKPrivateKey", codec: priv, as: name, want: AuthOK},
		{name: "OKCodecKeysChanged", codec: pub, as: name, want: AuthOK, edit: func(md storage.Metadata) {
			md[MetaCompressionAlgorithm] = "zstd"
			md["Content-Length"] = "12"
		}},
		{name: "ErrStartTimeAltered", codec: pub, as: name, want: AuthInvalid, edit: func(md storage.Metadata) {
			md[MetaStartTime] = "2099-01-01T00:00:00+00:00"
		}},
		{name: "ErrStartSegmentAltered", codec: pub, as: name, want: AuthInvalid, edit: func(md storage.Metadata) {
			md[MetaStartWALSegment] = "000000010000001000000000"
		}},
		{name: "ErrKeyAdded", codec: pub, as: name, want: AuthInvalid, edit: func(md storage.Metadata) {
			md[MetaChunkCount] = "1"
		}},
		{name: "ErrKeyRemoved", codec: pub, as: name, want: AuthInvalid, edit: func(md storage.Metadata) {
			delete(md, MetaTotalSizeEnc)
		}},
		{name: "ErrOtherName", codec: pub, as: "2099-01-01_00-00_0", want: AuthInvalid},
		{name: "ErrOtherSitesKey", codec: &Codec{KeyID: "k1", PublicKey: &other.PublicKey}, as: name, want: AuthInvalid},
		{name: "ErrUnknownKeyID", codec: &Codec{KeyID: "k2", PublicKey: &key.PublicKey}, as: name, want: AuthInvalid},
		{name: "ErrNotHex", codec: pub, as: name, want: AuthInvalid, edit: func(md storage.Metadata) {
			md[MetaBackupMAC] = "zz"
		}},
		{name: "NoneStripped", codec: pub, as: name, want: AuthNone, edit: func(md storage.Metadata) {
			delete(md, MetaBackupMAC)
		}},
	}
	signed := signedMetadata(t, key, name)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := maps.Clone(signed)
			if tc.edit != nil {
				tc.edit(md)
			}
			if got := tc.codec.BackupAuth(tc.as, md); got != tc.want {
				t.Errorf("BackupAuth = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCodec_SignBackupWithoutKeys: a site without keys signs nothing
// (nothing there is authenticated), so its backups plan as before.
func TestCodec_SignBackupWithoutKeys(t *testing.T) {
	md := storage.Metadata{MetaStartTime: "2024-03-09T10:00:00+00:00"}
	for _, c := range []*Codec{nil, {Compression: "snappy"}} {
		if err := c.SignBackup("2024-03-09_10-00_0", md); err != nil {
			t.Fatal(err)
		}
		if _, ok := md[MetaBackupMAC]; ok || len(md) != 1 {
			t.Errorf("codec %+v signed a site without keys: %v", c, md)
		}
	}
}

// NewestTrusted passes over a planted backup listed as the newest where
// an authenticated one exists, and falls back to the newest listed one
// where none authenticates.
func TestNewestTrusted(t *testing.T) {
	signed := &BackupInfo{Name: "2024-03-07_10-00_0", Auth: AuthOK}
	planted := &BackupInfo{Name: "2099-01-01_00-00_0", Auth: AuthNone}
	tests := []struct {
		name string
		bs   []*BackupInfo
		want *BackupInfo
	}{
		{"None", nil, nil},
		{"Signed", []*BackupInfo{signed}, signed},
		{"PlantedNewer", []*BackupInfo{signed, planted}, signed},
		{"NoneAuthenticated", []*BackupInfo{planted}, planted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewestTrusted(tt.bs); got != tt.want {
				t.Errorf("NewestTrusted = %v, want %v", got, tt.want)
			}
		})
	}
}
