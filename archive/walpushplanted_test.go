package archive

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_PushWAL_HistoryPlanted: a history file's content is easy to
// foresee ("1\t0/5000000\tno recovery target specified\n"), so someone who
// can write the storage, holding no key, can plant an object under its
// name, before PostgreSQL archives it, whose metadata records the hash of
// the file to come. PushWAL must not take that for the file already
// archived (exit 0, and recovery later stops at an object wal-fetch
// refuses): in a site with keys it refuses an object whose metadata does
// not authenticate for the file's name and cluster, naming it, and leaves
// it alone. Another cluster's history file of the same bytes (a pg_upgrade
// into the same site) is not this cluster's either, with or without keys.
// The cluster's own file pushed again still succeeds.
func TestArchive_PushWAL_HistoryPlanted(t *testing.T) {
	ctx := context.Background()
	const four = "00000004.history"
	body := "1\t0/5000000\tno recovery target specified\n2\t0/8000000\tno recovery target specified\n" +
		"3\t0/A000000\tno recovery target specified\n"

	t.Run("OK", func(t *testing.T) {
		a := walTestArchive(t, true)
		a.Codec.RequireEncryption = true
		pushHistories(t, a)
		for range 2 {
			if err := pushHistory(t, a, four, body, testSystemID); err != nil {
				t.Fatalf("push of the cluster's own %s (again): %v", four, err)
			}
		}
	})
	plants := []struct {
		name string
		data []byte
		md   func(a *Archive) storage.Metadata
	}{
		{"ErrUnsigned", []byte("not a history file"), func(*Archive) storage.Metadata {
			return storage.Metadata{MetaHash: sha1Hex([]byte(body)), MetaHashAlgorithm: "sha1"}
		}},
		{"ErrUnsignedPlain", []byte(body), func(*Archive) storage.Metadata {
			return storage.Metadata{MetaHash: sha1Hex([]byte(body)), MetaHashAlgorithm: "sha1"}
		}},
		{"ErrOtherFileSigned", nil, func(a *Archive) storage.Metadata {
			// 00000003.history's envelope and HMAC, with the hash of
			// the file to come.
			_, obj := storetest.Read(t, a.Store, a.Layout.WALKey("00000003.history"))
			md := obj.Metadata
			md[MetaHash] = sha1Hex([]byte(body))
			return md
		}},
	}
	for _, p := range plants {
		t.Run(p.name, func(t *testing.T) {
			a := walTestArchive(t, true)
			a.Codec.RequireEncryption = true
			pushHistories(t, a)
			data := p.data
			if data == nil {
				data, _ = storetest.Read(t, a.Store, a.Layout.WALKey("00000003.history"))
			}
			key := a.Layout.WALKey(four)
			if err := a.Store.Put(ctx, key, bytes.NewReader(data), p.md(a)); err != nil {
				t.Fatal(err)
			}
			err := pushHistory(t, a, four, body, testSystemID)
			if !errors.Is(err, ErrHistoryNotAuthentic) || !strings.Contains(err.Error(), key) {
				t.Fatalf("push of %s over a planted object with its hash: %v; want ErrHistoryNotAuthentic naming %s", four, err, key)
			}
			if got, _ := storetest.Read(t, a.Store, key); !bytes.Equal(got, data) {
				t.Errorf("the planted object was replaced")
			}
			if _, ferr := readAndFetchFor(t, a, four, testSystemID); ferr == nil {
				t.Errorf("wal-fetch delivers the planted object: the test plants nothing it would refuse")
			}
		})
	}
	t.Run("ErrOtherSystem", func(t *testing.T) {
		const sysOld, sysNew = 7000000000000000001, 7000000000000000002
		const two = "00000002.history"
		old := "1\t0/5000000\tno recovery target specified\n"
		for _, keys := range []bool{true, false} {
			a := walTestArchive(t, keys)
			a.Codec.RequireEncryption = keys
			if err := pushHistory(t, a, two, old, sysOld); err != nil {
				t.Fatal(err)
			}
			err := pushHistory(t, a, two, old, sysNew)
			if err == nil || !strings.Contains(err.Error(), "7000000000000000001") || !strings.Contains(err.Error(), "pg_upgrade") {
				t.Errorf("keys %v: push of %s, stored with the same bytes by cluster %d, for cluster %d: %v; want a refusal naming the other system and pg_upgrade",
					keys, two, uint64(sysOld), uint64(sysNew), err)
			}
			if err := pushHistory(t, a, two, old, sysOld); err != nil {
				t.Errorf("keys %v: push of %s again by the cluster that stored it: %v", keys, two, err)
			}
		}
	})
}
