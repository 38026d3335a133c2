package restore

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hoardbackup/hoard/archive"
)

// ErrPGManifest is returned (wrapped) when a restored file differs from
// its entry in the backup's backup_manifest (size or CRC-32C), is not
// listed there, or a file listed there was not restored.
var ErrPGManifest = errors.New("restored files differ from the backup's backup_manifest")

// castagnoli is PostgreSQL's CRC-32C (pg_crc32c), the checksum
// BASE_BACKUP and hoard's local-tar record in backup_manifest.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pgManifest is PostgreSQL's backup_manifest of the backup restored: each
// file's size and CRC-32C, by its path relative to the data directory
// (a tablespace's files under pg_tblspc/<oid>/). Each file restored is
// compared with its entry as it is written (check), and once the last one
// is, every entry must have been restored, but for those the backup
// leaves out on purpose (missing). Several goroutines
// may use one pgManifest.
type pgManifest struct {
	mu    sync.Mutex
	files map[string]*pgManifestEntry
	// spcs maps a tablespace's name in the backup's manifest to the
	// prefix of its files' paths, pg_tblspc/<oid>/.
	spcs map[string]string
	// need, when set, says which listed files missing requires: a
	// parent of an incremental chain need not have held a file the
	// restored backup no longer has (fitParent).
	need func(k string) bool
}

// pgManifestEntry is one file of backup_manifest.
type pgManifestEntry struct {
	size     int64
	crc      uint32
	hasCRC   bool // Checksum-Algorithm CRC32C; other algorithms are not compared
	restored bool
}

// pgmPass reads backup_manifest in the pass ReadControl makes over a
// control object (readControl), so that the object is downloaded,
// decrypted and decompressed once, and a control object altered between
// two reads cannot give restore one backup_manifest and the extraction
// another tar: both come from the bytes whose integrity ReadControl
// checked (Control.Sum).
type pgmPass struct {
	// want reports, from the control tar's manifest m (its first
	// member), whether backup_manifest is read.
	want  func(m *archive.Manifest) bool
	found bool
	// big is set for a backup_manifest of more than
	// maxPGManifest bytes, which levelResult refuses for an
	// incremental backup.
	big bool
	pm  *pgManifest
	err error // why backup_manifest does not parse
}

// member reads member h of the control tar of manifest m, whose data is
// data, when it is backup_manifest and want says so.
func (p *pgmPass) member(m *archive.Manifest, h *tar.Header, data io.Reader) error {
	if path.Clean(h.Name) != archive.ControlPGManifest || h.Typeflag != tar.TypeReg {
		return nil
	}
	if !p.want(m) {
		return nil
	}
	if p.found {
		return fmt.Errorf("member %s twice: %w", archive.ControlPGManifest, ErrUnsafeMember)
	}
	p.found = true
	p.big = h.Size > maxPGManifest
	// A parse error is kept, not returned: ReadControl reads the rest
	// of the member, and an error of the store or the codec under it
	// comes back from the tar reader then, and wins (it says nothing of
	// the JSON).
	p.pm, p.err = parsePGManifest(data)
	return nil
}

// result is the backup_manifest of backup b, whose control object
// readControl read as ctrl with p, as restore compares its files: Run
// reads it when b's metadata says the control tar holds one
// (hoard-pg-manifest; PGHoard's backups hold none), readChain for each
// backup of an incremental chain. One that does not parse is refused
// (ErrPGManifest); so is a control object without one when that
// metadata says there is one and authenticates; nil otherwise: metadata
// altered without the key is not believed.
func (p *pgmPass) result(b *archive.BackupInfo, ctrl *archive.Control) (*pgManifest, error) {
	switch {
	case p.err != nil:
		return nil, fmt.Errorf("control object %s: %s cannot be read (restore another backup): %w: %w", b.Key, archive.ControlPGManifest, p.err, ErrPGManifest)
	case p.pm == nil && (b.Auth == archive.AuthInvalid || !b.PGManifest):
		// Not what the metadata says: levelResult, which reads one
		// whatever it says, says why it must be there.
		return nil, nil
	case p.pm == nil:
		return nil, fmt.Errorf("control object %s holds no %s, which the backup's metadata says it holds (restore another backup): %w",
			b.Key, archive.ControlPGManifest, ErrPGManifest)
	}
	pm := p.pm
	pm.spcs = map[string]string{}
	for name, ts := range ctrl.Manifest.Tablespaces {
		pm.spcs[name] = "pg_tblspc/" + strconv.FormatUint(uint64(ts.OID), 10) + "/"
	}
	return pm, nil
}

// levelResult is result for a backup that chain says is of an
// incremental chain (errChainNoPGManifest). An incremental backup's
// backup_manifest of more than maxPGManifest bytes is refused: the
// paths it lists are kept (chainLevel.files) as well as its entries.
// readChain and verify (ReadControlPGManifest, NewPGManifestCheck) both
// take this one check, so that verify never calls sound a backup that
// restore refuses.
func (p *pgmPass) levelResult(b *archive.BackupInfo, ctrl *archive.Control, chain bool) (*pgManifest, error) {
	pm, err := p.result(b, ctrl)
	switch {
	case err != nil:
	case chain && pm == nil:
		err = errChainNoPGManifest(b)
	case p.big && ctrl.Manifest.Hoard != nil && ctrl.Manifest.Hoard.Incremental != nil:
		err = fmt.Errorf("control object %s: member %s over %d bytes: %w", b.Key, archive.ControlPGManifest, maxPGManifest, archive.ErrControlLimit)
	}
	return pm, err
}

// readPGManifest reads the backup_manifest member of backup b's control
// object, which ReadControl read first as ctrl, in a pass of its own:
// the object must decode to the same bytes (size and SHA-256), so that
// the files are compared with the manifest of the control tar the
// restore or verify read. The same refusals as pgmPass.result. verify
// --full reads it so, when the first of b's objects is checked, to hold
// it no longer than it checks them; other, when not nil, gets every
// other member in the same pass.
func readPGManifest(ctx context.Context, src *archive.Archive, b *archive.BackupInfo, ctrl *archive.Control, chain bool, other func(h *tar.Header, data io.Reader) error) (*pgManifest, error) {
	rc, _, err := src.Codec.Open(ctx, src.Store, b.Key)
	if err != nil {
		return nil, fmt.Errorf("open control object %s: %w", b.Key, err)
	}
	defer rc.Close()
	sum := sha256.New()
	sized := &sizedReader{r: rc, max: ctrl.Size, what: "decoded bytes, more than when it was first read"}
	r := io.TeeReader(sized, sum)
	tr := tar.NewReader(r)
	p := &pgmPass{want: func(*archive.Manifest) bool { return true }}
	for h, err := range Members(tr) {
		if err != nil {
			return nil, fmt.Errorf("control object %s: %w", b.Key, err)
		}
		if other != nil && path.Clean(h.Name) != archive.ControlPGManifest {
			if err := other(h, tr); err != nil {
				return nil, fmt.Errorf("control object %s: %w", b.Key, err)
			}
			continue
		}
		if err := p.member(ctrl.Manifest, h, tr); err != nil {
			return nil, fmt.Errorf("control object %s: %w", b.Key, err)
		}
		if p.err != nil {
			// The rest of the member: a read error under the JSON wins.
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return nil, fmt.Errorf("control object %s: %s: %w", b.Key, archive.ControlPGManifest, err)
			}
		}
	}
	if _, err := io.Copy(io.Discard, struct{ io.Reader }{r}); err != nil {
		return nil, fmt.Errorf("control object %s: read: %w", b.Key, err)
	}
	var got [sha256.Size]byte
	sum.Sum(got[:0])
	if sized.n != ctrl.Size || got != ctrl.Sum {
		return nil, fmt.Errorf("control object %s changed since it was first read (%d bytes, then %d): %w", b.Key, ctrl.Size, sized.n, ErrSizeMismatch)
	}
	return p.levelResult(b, ctrl, chain)
}

// parsePGManifest decodes the "Files" of a backup_manifest from r one
// entry at a time (backup_manifest.c writes them): Path, or Encoded-Path
// (hex) for a name that is not UTF-8, Size, and for CRC32C the checksum,
// the CRC's bytes in the server's byte order as hex (pg_checksum_final).
// The manifest's own checksum is not checked: the control object's
// integrity checks cover it.
func parsePGManifest(r io.Reader) (*pgManifest, error) {
	dec := json.NewDecoder(r)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object (%v)", err)
	}
	pm := &pgManifest{files: map[string]*pgManifestEntry{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if tok != "Files" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, err
			}
			continue
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return nil, fmt.Errorf("its Files is not an array (%v)", err)
		}
		var f, zero struct {
			Path        string `json:"Path"`
			EncodedPath string `json:"Encoded-Path"`
			Size        int64  `json:"Size"`
			Algorithm   string `json:"Checksum-Algorithm"`
			Checksum    string `json:"Checksum"`
		}
		for n := 0; dec.More(); n++ {
			if n >= maxManifestFiles {
				return nil, fmt.Errorf("its Files: more than %d entries: %w", maxManifestFiles, archive.ErrControlLimit)
			}
			f = zero
			if err := dec.Decode(&f); err != nil {
				return nil, fmt.Errorf("its Files, entry %d: %w", n, err)
			}
			p := f.Path
			if f.EncodedPath != "" {
				b, err := hex.DecodeString(f.EncodedPath)
				if err != nil {
					return nil, fmt.Errorf("its Files, entry %d: Encoded-Path %s: %w", n, archive.Quoted(f.EncodedPath), err)
				}
				p = string(b)
			}
			e := &pgManifestEntry{size: f.Size}
			if strings.EqualFold(f.Algorithm, "CRC32C") {
				b, err := hex.DecodeString(f.Checksum)
				if err != nil || len(b) != 4 {
					return nil, fmt.Errorf("its Files, entry %d: CRC32C checksum %s is not 4 bytes in hex", n, archive.Quoted(f.Checksum))
				}
				e.crc, e.hasCRC = binary.NativeEndian.Uint32(b), true
			}
			pm.files[p] = e
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
	}
	return pm, nil
}

// key is the backup_manifest path of file rel of tablespace spc ("": the
// data directory).
func (pm *pgManifest) key(spc, rel string) string {
	return pm.spcs[spc] + rel
}

// check compares file rel of tablespace spc, restored from member with
// size bytes whose CRC-32C is crc, with its entry.
func (pm *pgManifest) check(spc, rel, member string, size int64, crc uint32) error {
	k := pm.key(spc, rel)
	pm.mu.Lock()
	e := pm.files[k]
	if e != nil {
		e.restored = true
	}
	pm.mu.Unlock()
	switch {
	case e == nil && k == "backup_manifest":
		return nil // not listed in itself
	case e == nil:
		return fmt.Errorf("member %s: %s is not listed in the backup's backup_manifest: %w", archive.Quoted(member), archive.Quoted(k), ErrPGManifest)
	case size != e.size:
		return fmt.Errorf("member %s: %s: %d bytes restored, the backup's %s lists %d: %w", archive.Quoted(member), archive.Quoted(k), size, "backup_manifest", e.size, ErrPGManifest)
	case e.hasCRC && crc != e.crc:
		return fmt.Errorf("member %s: %s: CRC-32C %08x restored, the backup's %s lists %08x: %w", archive.Quoted(member), archive.Quoted(k), crc, "backup_manifest", e.crc, ErrPGManifest)
	}
	return nil
}

// checkData compares file rel of the data directory, held in memory
// (pg_control, before restore changes it), with its entry.
func (pm *pgManifest) checkData(rel string, data []byte) error {
	return pm.check("", rel, rel, int64(len(data)), crc32.Checksum(data, castagnoli))
}

// skip counts file rel of the data directory as restored: restore writes
// it anew (tablespace_map with moved tablespaces).
func (pm *pgManifest) skip(rel string) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if e := pm.files[rel]; e != nil {
		e.restored = true
	}
}

// leftOut reports whether the backup left out file k of the manifest on
// purpose, by the rule basebackup applies to what the server sends
// (archive.LeftOut): BASE_BACKUP's backup_manifest lists files such as
// postgresql.conf.old or pg_hba.conf~ that hoard does not store. A
// tablespace's file is judged as its tablespace's backup judged it; one
// under pg_tblspc/ of a tablespace the backup does not hold, and the
// files the control tar holds, are never left out. A top-level
// backup_label.old may be left out too: hoard kept it only from c005a0d
// on, and its BASE_BACKUP backups from before of a cluster made from a
// backup (a standby, a cluster restored once) list it and do not hold
// it. PostgreSQL never reads it (it is the backup_label of the backup the
// cluster was made from, renamed at startup), so its absence changes
// nothing in the restored cluster.
func (pm *pgManifest) leftOut(k string) bool {
	for _, prefix := range pm.spcs {
		if rel, ok := strings.CutPrefix(k, prefix); ok {
			return archive.LeftOut(rel, false)
		}
	}
	switch k {
	case "global/pg_control", "backup_label", "tablespace_map":
		return false
	case "backup_label.old":
		return true
	}
	return !strings.HasPrefix(k, "pg_tblspc/") && archive.LeftOut(k, true)
}

// missing returns an error naming the files the manifest lists that were
// neither restored nor left out of the backup on purpose (leftOut), the
// first 10 of them; nil when there are none.
func (pm *pgManifest) missing() error {
	pm.mu.Lock()
	var out []string
	for k, e := range pm.files {
		if !e.restored && !pm.leftOut(k) && (pm.need == nil || pm.need(k)) {
			out = append(out, k)
		}
	}
	pm.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	more := ""
	if len(out) > 10 {
		more = fmt.Sprintf(" and %d more", len(out)-10)
		out = out[:10]
	}
	for i := range out {
		out[i] = archive.Quoted(out[i])
	}
	return fmt.Errorf("the backup's backup_manifest lists files that were not restored: %s%s: %w", strings.Join(out, ", "), more, ErrPGManifest)
}

// crcWriter counts the bytes written through it to w and their CRC-32C.
// It has no ReadFrom, so that io.CopyBuffer uses its buffer.
type crcWriter struct {
	w   io.Writer
	crc uint32
	n   int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.n += int64(n)
	return n, err
}
