package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// TestRetention_RotatedPublicOnly: after a key rotation (key1, then key2
// as encryption_key_id), a host that holds only the public halves of both
// keys, as security.md advises for the daemon and retention, authenticates
// the backups signed under key1 with key1's configured public key: hoard
// list calls them authenticated, and retention deletes the old ones the
// policy no longer keeps, instead of keeping them (and every WAL file)
// for ever as metadata that does not authenticate.
func TestRetention_RotatedPublicOnly(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "store")
	st, err := storage.Open(ctx, storage.Config{Type: "local", Directory: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys := map[string]keyPair{"key1": checkKeyPair(t), "key2": checkKeyPair(t)}
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	var names []string
	for i, kid := range []string{"key1", "key1", "key2", "key2"} {
		pub, err := crypto.ParsePublicKeyPEM(keys[kid].pub)
		if err != nil {
			t.Fatal(err)
		}
		a := &archive.Archive{Store: st, Codec: &archive.Codec{KeyID: kid, PublicKey: pub}, Layout: archive.Layout{Prefix: "s"}}
		at := start.Add(time.Duration(i) * 24 * time.Hour)
		seg := fmt.Sprintf("0000000100000000000000%02X", 2*i+2)
		b := &archive.BackupInfo{Format: archive.FormatBBv2, StartWALSegment: seg, StartTime: at, EndTime: at.Add(time.Minute),
			StartTimeline: 1, EndTimeline: 1, PGVersion: 150004, ChunkCount: 1}
		name := at.Format("2006-01-02_15-04") + "_0"
		md := b.ToMetadata()
		if err := a.Codec.SignBackup(name, md); err != nil {
			t.Fatal(err)
		}
		// One chunk: all a host without the private key can check
		// before retention deletes an older backup (CheckBackupSealed).
		if _, err := a.Codec.Put(ctx, st, a.Layout.ChunkKey(name+"/"+name+".00000001.pghoard"), strings.NewReader("chunk"), 5, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Codec.Put(ctx, st, a.Layout.BackupKey(name), strings.NewReader("control"), 7, md); err != nil {
			t.Fatal(err)
		}
		if err := a.MarkSigned(ctx); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	configure := func(publics ...string) string {
		t.Helper()
		ks := map[string]any{}
		for _, id := range publics {
			ks[id] = map[string]any{"public": keys[id].pub}
		}
		site := map[string]any{
			"prefix": "s", "basebackup_count": 2, "encryption_key_id": "key2", "encryption_keys": ks,
			"object_storage": map[string]any{"storage_type": "local", "directory": dir},
		}
		js, err := json.Marshal(map[string]any{"backup_location": filepath.Join(root, "state"), "backup_sites": map[string]any{"s": site}})
		if err != nil {
			t.Fatal(err)
		}
		cfgFile := filepath.Join(root, strings.Join(publics, "+")+".json")
		if err := os.WriteFile(cfgFile, js, 0o600); err != nil {
			t.Fatal(err)
		}
		return cfgFile
	}
	run := func(cfgFile string, out any, args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		app := App("test")
		app.Writer, app.ErrWriter = &stdout, &stderr
		if err := app.RunContext(ctx, append([]string{"hoard", "--config", cfgFile}, args...)); err != nil {
			t.Fatalf("hoard %v: %v\n%s", args, err, stderr.String())
		}
		if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
			t.Fatalf("hoard %v: %v\n%s", args, err, stdout.String())
		}
	}
	retention := func(cfgFile string) (deleted []string, kept map[string]string, notes string) {
		t.Helper()
		var plan retentionJSON
		run(cfgFile, &plan, "retention", "--dry-run", "--json")
		kept = map[string]string{}
		for _, d := range plan.Delete {
			deleted = append(deleted, d.Name)
		}
		for _, k := range plan.Keep {
			kept[k.Name] = k.Reason
		}
		return deleted, kept, strings.Join(plan.Notes, "\n")
	}

	t.Run("OK", func(t *testing.T) {
		cfgFile := configure("key1", "key2")
		var listed []map[string]any
		run(cfgFile, &listed, "list", "--json")
		for _, b := range listed {
			if got, want := b["metadata_auth"], "authenticated"; got != want {
				t.Errorf("hoard list: %v (%v): metadata_auth %v, want %s", b["name"], b["metadata"].(map[string]any)["encryption-key-id"], got, want)
			}
		}
		if len(listed) != len(names) {
			t.Errorf("hoard list listed %d backups, want %d", len(listed), len(names))
		}
		deleted, kept, notes := retention(cfgFile)
		if got, want := strings.Join(deleted, " "), strings.Join(names[:2], " "); got != want {
			t.Errorf("retention deletes %q, want %q (key1's, older than basebackup_count key2 backups); keeps: %q\nnotes:\n%s",
				got, want, kept, notes)
		}
	})

	// Without key1's public key the backups signed under it cannot be
	// authenticated: retention keeps them and every WAL file, and says
	// which key to add, not that they were altered.
	t.Run("ErrKeyMissing", func(t *testing.T) {
		deleted, kept, notes := retention(configure("key2"))
		if len(deleted) != 0 {
			t.Errorf("retention deletes %q without key1's public key, want nothing", deleted)
		}
		for _, name := range names[:2] {
			if why := kept[name]; !strings.Contains(why, "key key1") || !strings.Contains(why, "encryption_keys.key1.public") || strings.Contains(why, "altered") {
				t.Errorf("%s kept because %q, want it to name key key1 and encryption_keys.key1.public, not alteration", name, why)
			}
		}
		if !strings.Contains(notes, "encryption_keys.key1.public") || strings.Contains(notes, "altered") {
			t.Errorf("notes do not name encryption_keys.key1.public, or speak of alteration:\n%s", notes)
		}
	})
}
