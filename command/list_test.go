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
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/storage"
)

func testBackups(t *testing.T) []*archive.BackupInfo {
	t.Helper()
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	hoard := &archive.BackupInfo{
		Format: archive.FormatBBv2, StartWALSegment: "000000010000000000000004", EndWALSegment: "000000010000000000000005",
		StartTime: start, EndTime: start.Add(time.Minute), StartLSN: 0x4000028, EndLSN: 0x5000100,
		StartTimeline: 1, EndTimeline: 1, TotalSizePlain: 3 << 30, TotalSizeEnc: 1 << 30, PGVersion: 150004,
	}
	h, err := archive.ParseBackupInfo("s/basebackup/2026-01-02_03-00_0.00000000.pghoard", 2048, hoard.ToMetadata())
	if err != nil {
		t.Fatal(err)
	}
	// As PGHoard writes it: no LSNs, no total-size-enc.
	p, err := archive.ParseBackupInfo("s/basebackup/2021-07-30_13-56_0", 4096, storage.Metadata{
		"format": "pghoard-bb-v2", "start-wal-segment": "000000020000000100000003",
		"start-time": "2021-07-30T13:56:48+00:00", "end-time": "2021-07-30 14:33:12.657815+00:00",
		"total-size-plain": "1000",
	})
	if err != nil {
		t.Fatal(err)
	}
	return []*archive.BackupInfo{p, h}
}

func TestWriteBackupsTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeBackupsTable(&b, archive.Backups{Sound: testBackups(t)}, nil, nil, false, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Basebackup", "2026-01-02_03-00_0", "1.0 GiB", "3.0 GiB", "2026-01-02T03:00:00Z", "2026-01-02T03:01:00Z",
		"0/4000028", "0/5000100", "2021-07-30_13-56_0", "4.0 KiB", "1000 B", "1/3000000",
		"metadata: start-wal-segment=000000020000000100000003",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteBackups_HoldingSite(t *testing.T) {
	bs := testBackups(t)
	old := &archive.Archive{Site: "oldsite"}
	bs[0].Archive = old // PGHoard's backup, no site in its metadata
	bs[1].Site = "newsite"
	var b bytes.Buffer
	if err := writeBackupsTable(&b, archive.Backups{Sound: bs}, nil, nil, false, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if !strings.Contains(lines[0], "Site") || !strings.Contains(lines[2], "2021-07-30_13-56_0  oldsite") ||
		!strings.Contains(lines[3], "2026-01-02_03-00_0  newsite") {
		t.Errorf("table does not name the sites:\n%s", b.String())
	}
	b.Reset()
	if err := writeBackupsJSON(&b, archive.Backups{Sound: bs}, nil); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got[0]["site"] != "oldsite" || got[1]["site"] != "newsite" {
		t.Errorf("JSON sites %v, %v; want oldsite, newsite", got[0]["site"], got[1]["site"])
	}
}

func TestWriteBackupsJSON(t *testing.T) {
	var b bytes.Buffer
	if err := writeBackupsJSON(&b, archive.Backups{Sound: testBackups(t)}, nil); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d backups", len(got))
	}
	h := got[1]
	if h["name"] != "2026-01-02_03-00_0" || h["start_lsn"] != "0/4000028" || h["end_lsn"] != "0/5000100" ||
		h["end_wal_segment"] != "000000010000000000000005" || h["total_size_enc"] != float64(1<<30) ||
		h["end_time"] != "2026-01-02T03:01:00Z" {
		t.Errorf("hoard backup: %v", h)
	}
	if md, ok := got[0]["metadata"].(map[string]any); !ok || md["format"] != "pghoard-bb-v2" {
		t.Errorf("metadata: %v", got[0]["metadata"])
	}
	var empty bytes.Buffer
	if err := writeBackupsJSON(&empty, archive.Backups{}, nil); err != nil || strings.TrimSpace(empty.String()) != "[]" {
		t.Errorf("no backups: %q, %v", empty.String(), err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %s, want %s", n, got, want)
		}
	}
}

// TestList_MovedFrom runs hoard list on a site that moved from another
// site in its own local storage: both sites' backups are listed, oldest
// first, each with the site that holds it.
func TestList_MovedFrom(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	put := func(dir, prefix, name string, start time.Time) {
		t.Helper()
		info := &archive.BackupInfo{Format: archive.FormatBBv2, StartWALSegment: "000000010000000000000002", StartTime: start}
		archivetest.PutBackupInfo(t, archivetest.Local(t, dir, prefix, &archive.Codec{}), name, info)
	}
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	oldDir, newDir := filepath.Join(root, "old"), filepath.Join(root, "new")
	put(oldDir, "old", "2026-01-02_03-00_0", start)
	put(newDir, "new", "2026-01-03_03-00_0", start.Add(24*time.Hour))
	put(oldDir, "old", "2026-01-04_03-00_0", start.Add(48*time.Hour))
	cfg := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {
		"new": {"prefix": "new", "moved_from": ["old"], "object_storage": {"storage_type": "local", "directory": %q}},
		"old": {"prefix": "old", "active": false, "object_storage": {"storage_type": "local", "directory": %q}}}}`,
		filepath.Join(root, "state"), newDir, oldDir)
	cfgFile := filepath.Join(root, "hoard.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"list"}, {"restore", "list-basebackups"}} {
		var out, errOut bytes.Buffer
		app := App("test")
		app.Writer, app.ErrWriter = &out, &errOut
		argv := append([]string{"hoard", "--config", cfgFile, "--site", "new"}, args...)
		if err := app.RunContext(ctx, append(argv, "--json")); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		var got []map[string]any
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
		var seen []string
		for _, b := range got {
			seen = append(seen, fmt.Sprintf("%s@%s", b["name"], b["site"]))
		}
		want := "2026-01-02_03-00_0@old 2026-01-03_03-00_0@new 2026-01-04_03-00_0@old"
		if strings.Join(seen, " ") != want {
			t.Errorf("hoard %v lists %v, want %s", args, seen, want)
		}
	}
}

// TestList_DamagedBackup: a backup with a bad start time, one with a bad
// LSN and one whose local sidecar is cut short do not make hoard list fail:
// they are listed as damaged with the reason, and the sound one as usual.
func TestList_DamagedBackup(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	store := filepath.Join(root, "store")
	a := archivetest.Local(t, store, "s", &archive.Codec{})
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	for i, damage := range []map[string]string{
		nil,
		{archive.MetaStartTime: "2026-13-45T99:00:00Z"},
		{archive.MetaStartLSN: "not-an-lsn"},
		nil, // its sidecar is cut below
	} {
		info := &archive.BackupInfo{Format: archive.FormatBBv2, StartWALSegment: "000000010000000000000002", StartTime: start.Add(time.Duration(i) * time.Hour)}
		md := info.ToMetadata()
		for k, v := range damage {
			md[k] = v
		}
		name := fmt.Sprintf("2026-01-02_0%d-00_0", 3+i)
		body := []byte("control")
		if _, err := a.Codec.Put(ctx, a.Store, a.Layout.BackupKey(name), bytes.NewReader(body), int64(len(body)), md); err != nil {
			t.Fatal(err)
		}
	}
	sidecar := filepath.Join(store, filepath.FromSlash(a.Layout.BackupKey("2026-01-02_06-00_0"))+".metadata")
	js, err := os.ReadFile(sidecar)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sidecar, js[:len(js)-20], 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": "s", "object_storage": {"storage_type": "local", "directory": %q}}}}`,
		filepath.Join(root, "state"), store)
	cfgFile := filepath.Join(root, "hoard.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	list := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		app := App("test")
		app.Writer, app.ErrWriter = &out, &errOut
		if err := app.RunContext(ctx, append([]string{"hoard", "--config", cfgFile, "list"}, args...)); err != nil {
			t.Fatalf("hoard list %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(list("--json")), &got); err != nil {
		t.Fatal(err)
	}
	damaged := map[string]string{}
	for _, b := range got {
		if d, ok := b["damaged"].(string); ok {
			damaged[b["name"].(string)] = d
		} else if b["name"] != "2026-01-02_03-00_0" {
			t.Errorf("listed %v as sound", b["name"])
		}
	}
	for name, why := range map[string]string{
		"2026-01-02_04-00_0": archive.MetaStartTime, "2026-01-02_05-00_0": archive.MetaStartLSN, "2026-01-02_06-00_0": "metadata",
	} {
		if !strings.Contains(damaged[name], why) {
			t.Errorf("%s: damaged = %q, want the reason to name %s", name, damaged[name], why)
		}
	}
	if len(got) != 4 {
		t.Errorf("listed %d backups, want 4: %v", len(got), got)
	}
	table := list()
	if !strings.Contains(table, "2026-01-02_03-00_0") || strings.Count(table, "DAMAGED") != 3 {
		t.Errorf("table:\n%s", table)
	}
}

// TestWriteBackupsTable_Chain: an incremental backup's row names its
// parent, and its chain's line the full backup and the chain's stored
// bytes, or says the chain is broken.
func TestWriteBackupsTable_Chain(t *testing.T) {
	mk := func(name, parent string, enc int64) *archive.BackupInfo {
		return &archive.BackupInfo{Name: name, Format: archive.FormatBBv2, Parent: parent, TotalSizeEnc: enc, StartTimeline: 1}
	}
	full := mk("2026-01-01_00-00_0", "", 10<<20)
	inc1 := mk("2026-01-02_00-00_0", full.Name, 1<<20)
	inc2 := mk("2026-01-03_00-00_0", inc1.Name, 1<<20)
	orphan := mk("2026-01-04_00-00_0", "2025-12-31_00-00_0", 1<<20)
	var b bytes.Buffer
	if err := writeBackupsTable(&b, archive.Backups{Sound: []*archive.BackupInfo{full, inc1, inc2, orphan}}, nil, nil, false, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"chain of 2026-01-02_00-00_0: 2 backups from full backup 2026-01-01_00-00_0, 11.0 MiB stored in all",
		"chain of 2026-01-03_00-00_0: 3 backups from full backup 2026-01-01_00-00_0, 12.0 MiB stored in all",
		"chain of 2026-01-04_00-00_0: BROKEN: backup 2026-01-04_00-00_0 is an incremental of backup 2025-12-31_00-00_0, which is not stored",
		"1    2026-01-02_00-00_0  -\n", // the parent, then no bad pages
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestWriteBackupsTable_Systems: authenticated backups of two database
// systems (another cluster's copied into the site, or from before a
// pg_upgrade) are named by system; one system gets no such lines.
func TestWriteBackupsTable_Systems(t *testing.T) {
	bs := testBackups(t)
	for i, id := range []string{"7000000000000000001", "7000000000000000002"} {
		bs[i].Auth, bs[i].SystemID = archive.AuthOK, id
	}
	var b bytes.Buffer
	if err := writeBackupsTable(&b, archive.Backups{Sound: bs}, nil, nil, false, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"database system 7000000000000000001: " + bs[0].Name,
		"database system 7000000000000000002: " + bs[1].Name, "of 2 database systems"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	bs[1].SystemID = bs[0].SystemID
	b.Reset()
	if err := writeBackupsTable(&b, archive.Backups{Sound: bs}, nil, nil, false, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "database system") {
		t.Errorf("one system, yet:\n%s", b.String())
	}
}

// TestWriteBackupsTable_Unsigned: a backup without a metadata HMAC is
// named as hoard verify names it: as from before signing when older than
// the first authenticated backup, as planted or stripped when newer or
// when the site's marker exists and none authenticates; nothing is said
// in a site that never signed.
func TestWriteBackupsTable_Unsigned(t *testing.T) {
	bs := testBackups(t)
	for _, c := range []struct {
		name  string
		auth  [2]archive.BackupAuth
		signs bool
		want  []string
	}{
		{"older", [2]archive.BackupAuth{archive.AuthNone, archive.AuthOK}, true,
			[]string{bs[0].Name + ": metadata has no HMAC, but it is older than the site's first authenticated backup"}},
		{"newer", [2]archive.BackupAuth{archive.AuthOK, archive.AuthNone}, false,
			[]string{bs[1].Name + ": metadata has no HMAC, though this site signs its backups and it is not older"}},
		{"stripped", [2]archive.BackupAuth{archive.AuthNone, archive.AuthNone}, true,
			[]string{bs[0].Name + ": metadata has no HMAC, though this site signs its backups and none",
				bs[1].Name + ": metadata has no HMAC, though this site signs its backups and none"}},
		{"never signed", [2]archive.BackupAuth{archive.AuthNone, archive.AuthNone}, false, nil},
	} {
		bs[0].Auth, bs[1].Auth = c.auth[0], c.auth[1]
		var b bytes.Buffer
		if err := writeBackupsTable(&b, archive.Backups{Sound: bs}, nil, nil, c.signs, false); err != nil {
			t.Fatal(err)
		}
		for _, want := range c.want {
			if !strings.Contains(b.String(), want) {
				t.Errorf("%s: table lacks %q:\n%s", c.name, want, b.String())
			}
		}
		if c.want == nil && strings.Contains(b.String(), "HMAC") {
			t.Errorf("%s: %s", c.name, b.String())
		}
	}
}

// TestWriteBackupsTable_InvalidKeyMissing: a backup whose HMAC names a
// key the configuration lacks is listed as that, with the key to add;
// with the key there, an HMAC that does not verify is altered metadata.
func TestWriteBackupsTable_InvalidKeyMissing(t *testing.T) {
	bs := testBackups(t)
	bs[0].Auth = archive.AuthOK // where none authenticates, none is named
	bs[1].Auth = archive.AuthInvalid
	bs[1].Metadata = storage.Metadata{archive.MetaEncryptionKeyID: "k"}
	k, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		codec *archive.Codec
		want  string
	}{
		{"KeyMissing", nil, bs[1].Name + ": metadata is signed with key k, whose public key is not in the configuration"},
		{"Altered", &archive.Codec{KeyID: "k", PublicKey: &k.PublicKey}, bs[1].Name + ": metadata does not authenticate (altered"},
	} {
		var b bytes.Buffer
		if err := writeBackupsTable(&b, archive.Backups{Sound: bs}, nil, c.codec, false, false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("%s: the table does not say %q:\n%s", c.name, c.want, b.String())
		}
	}
}

// TestWriteBackupsTable_StoredSize: list's size of a backup is the bytes
// all its objects take, its chunks (total-size-enc) and its control
// object, as hoard basebackup's summary says it: list showed the chunks
// alone (4.9 MiB) where the summary said 5.1 MiB stored.
func TestWriteBackupsTable_StoredSize(t *testing.T) {
	b := &archive.BackupInfo{
		Name: "2026-01-02_03-00_0", Format: archive.FormatBBv2, StartTimeline: 1, ChunkCount: 2,
		TotalSizePlain: 20 << 20, TotalSizeEnc: 4<<20 + 900<<10, StoredSize: 200 << 10,
	}
	const want = "5.1 MiB"
	var sum bytes.Buffer
	printSummary(&sum, b)
	if !strings.Contains(sum.String(), want+" stored") {
		t.Fatalf("basebackup summary lacks %q:\n%s", want+" stored", sum.String())
	}
	var list bytes.Buffer
	if err := writeBackupsTable(&list, archive.Backups{Sound: []*archive.BackupInfo{b}}, nil, nil, false, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list.String(), want) {
		t.Errorf("list does not say %s, as the basebackup summary does:\n%s", want, list.String())
	}
	var ret bytes.Buffer
	writeRetentionText(&ret, archive.RetentionPlan{Delete: []archive.BackupDecision{{Backup: b, Site: "s"}}}, nil, false)
	if !strings.Contains(ret.String(), want) {
		t.Errorf("retention does not say %s, as the basebackup summary does:\n%s", want, ret.String())
	}
}

// TestWriteBackupsTable_ChecksumFailures: a backup recorded with data
// page checksum failures (hoard-checksum-failures) is marked in the
// table with its count, as fact only where the site has no keys or the
// count's own HMAC verifies: a count altered without the key (it is not
// one of the keys the metadata HMAC binds, so the metadata still
// authenticates) or recorded unsigned in a site with keys is marked
// "?". A count of 0 (every page read passed) shows as 0, "?" too where
// it does not authenticate; "-" is for a backup that records none.
// Before, the table showed no such backup differently, and a recorded 0
// as "-": a count of 3 altered to 0 showed as a backup with no record,
// unmarked.
func TestWriteBackupsTable_ChecksumFailures(t *testing.T) {
	keyed := &archive.Codec{}
	archivetest.AddKeys(t, keyed)
	for _, c := range []struct {
		name     string
		codec    *archive.Codec
		edit     func(storage.Metadata) // of the first backup, as a writer of the bucket without keys
		want     [3]string              // the backups' cells
		unsigned bool                   // a count is marked ?
	}{
		{"Keyless", nil, nil, [3]string{"3", "0", "-"}, false},
		{"Signed", keyed, nil, [3]string{"3", "0", "-"}, false},
		{"Altered", keyed, func(md storage.Metadata) { md[archive.MetaChecksumFailures] = "1" }, [3]string{"1?", "0", "-"}, true},
		{"AlteredToZero", keyed, func(md storage.Metadata) { md[archive.MetaChecksumFailures] = "0" }, [3]string{"0?", "0", "-"}, true},
		{"Unsigned", keyed, func(md storage.Metadata) { delete(md, archive.MetaChecksumFailuresMAC) }, [3]string{"3?", "0", "-"}, true},
		{"PlantedOnClean", keyed, func(md storage.Metadata) { md[archive.MetaChecksumFailures] = "9" }, [3]string{"9?", "0", "-"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			codec := &archive.Codec{}
			if c.codec != nil {
				codec = c.codec
			}
			a := archivetest.New(t, storage.NewMem(), codec)
			first, second := "3", "0"
			if c.name == "PlantedOnClean" {
				first = "0"
			}
			keys := [3]string{archivetest.PutChecksumFailuresBackup(t, a, "2026-01-02_03-00_0", first), archivetest.PutChecksumFailuresBackup(t, a, "2026-01-03_03-00_0", second),
				archivetest.PutChecksumFailuresBackup(t, a, "2026-01-04_03-00_0", "")}
			if c.edit != nil {
				archivetest.PlantCopy(t, a.Store, keys[0], keys[0], c.edit)
			}
			// None recorded: the key absent, as in PGHoard's backups and
			// hoard's through a BASE_BACKUP the server ended cleanly.
			archivetest.PlantCopy(t, a.Store, keys[2], keys[2], func(md storage.Metadata) { delete(md, archive.MetaChecksumFailures) })
			bs, err := a.ScanAllBackups(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(bs.Sound) != 3 || bs.Sound[0].Auth != bs.Sound[1].Auth || bs.Sound[0].Auth != bs.Sound[2].Auth {
				t.Fatalf("listed %d backups, want 3 whose metadata authenticates alike", len(bs.Sound))
			}
			if c.codec != nil && bs.Sound[0].Auth != archive.AuthOK {
				t.Fatalf("metadata %q, want authenticated: the count is not one of the keys its HMAC binds", bs.Sound[0].Auth)
			}
			var b bytes.Buffer
			if err := writeBackupsTable(&b, bs, nil, a.Codec, a.Codec.PublicKey != nil, false); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for i, key := range keys {
				for _, line := range strings.Split(out, "\n") {
					if f := strings.Fields(line); strings.HasPrefix(line, archive.BackupName(key)+" ") && f[len(f)-1] != c.want[i] {
						t.Errorf("%s: bad pages %q, want %q:\n%s", archive.BackupName(key), f[len(f)-1], c.want[i], out)
					}
				}
			}
			if got, want := strings.Contains(out, "Bad pages: data pages whose checksums failed"), !strings.HasPrefix(c.want[0], "0"); got != want {
				t.Errorf("line saying what the count is shown %v, want %v (only for a count above 0):\n%s", got, want, out)
			}
			if got, want := strings.Contains(out, "a count marked ? is not authenticated"), c.unsigned; got != want {
				t.Errorf("line on unauthenticated counts shown %v, want %v:\n%s", got, want, out)
			}
		})
	}
}
