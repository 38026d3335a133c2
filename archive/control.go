package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
)

// Limits of a control object. It is small: the manifest, pg_control
// (8 KiB), backup_label, PostgreSQL's backup_manifest (about 150 bytes per
// file of the cluster) and a few directories. Reading one never holds more
// than the manifest in memory, and stops as soon as a limit is passed, so a
// compression bomb costs neither memory nor much time.
const (
	// MaxManifestSize bounds the JSON manifest, the only member held in
	// memory. PGHoard's manifest lists every file of the cluster in its
	// chunks' "files": 256 MiB is millions of files.
	MaxManifestSize = 256 << 20
	// MaxControlSize bounds the decoded control tar as a whole.
	MaxControlSize = 4 << 30
)

// maxControlSize is MaxControlSize, lowered by tests.
var maxControlSize int64 = MaxControlSize

// ErrControlLimit is returned (wrapped) for a control object or manifest
// larger than its limit.
var ErrControlLimit = errors.New("control object over its size limit")

// ErrBadControl is returned (wrapped) for a control object that decodes
// but is not a control tar restore can use: empty, its first member not
// the manifest, or without pg_control.
var ErrBadControl = errors.New("malformed control object")

// Control is what ReadControl found in a control object.
type Control struct {
	Manifest *Manifest // parsed and validated
	// Size and Sum are the length and SHA-256 of the decoded tar, padding
	// included: a second read of the object (restore extracts it after the
	// chunks) must find the same bytes.
	Size int64
	Sum  [sha256.Size]byte
	// Label is the backup_label member's bytes, nil when the tar holds
	// none or one over maxLabelSize: CheckControl compares its start with
	// the backup's metadata.
	Label []byte
}

// maxLabelSize bounds the backup_label kept in memory. PostgreSQL's is a
// few hundred bytes (do_pg_backup_stop in xlog.c); its LABEL line at most
// MAXPGPATH long.
const maxLabelSize = 64 << 10

// ControlCheck is called for each member of a control tar after the
// manifest, with the parsed manifest, the member's header and its data,
// which it may read (ReadControl reads what it leaves through), so that
// one pass over the object gives a caller the members it needs; an
// error stops the read.
type ControlCheck func(m *Manifest, h *tar.Header, data io.Reader) error

// ReadControl reads a pghoard-bb-v2 control tar from r to its end. The
// first member must be the manifest (ManifestName), at most
// MaxManifestSize bytes; it is parsed and validated (Manifest.Validate).
// Every other member goes to check (nil: any) and its data is read
// through without being kept, but for backup_label (Control.Label). More than MaxControlSize decoded bytes
// is an error wrapping ErrControlLimit. Reading to EOF runs the codec's
// integrity checks, so nothing is returned before they passed.
func ReadControl(r io.Reader, check ControlCheck) (*Control, error) {
	h := sha256.New()
	lr := &controlReader{r: r, h: h, max: maxControlSize}
	tr := tar.NewReader(lr)
	hdr, err := tr.Next()
	switch {
	case err == io.EOF:
		return nil, fmt.Errorf("read control tar: empty (%v): %w", err, ErrBadControl)
	case err != nil:
		return nil, fmt.Errorf("read control tar: %w", err)
	case hdr.Name != ManifestName:
		return nil, fmt.Errorf("control tar: first member is %s, not %s: %w", Quoted(hdr.Name), ManifestName, ErrBadControl)
	case hdr.Typeflag != tar.TypeReg:
		return nil, fmt.Errorf("control tar: %s is not a regular file: %w", ManifestName, ErrBadControl)
	}
	if hdr.Size > MaxManifestSize {
		return nil, fmt.Errorf("control tar: %s declares %d bytes, over the %d limit: %w", ManifestName, hdr.Size, MaxManifestSize, ErrControlLimit)
	}
	// Grown as the bytes arrive: a declared size is no reason to allocate.
	js, err := io.ReadAll(tr)
	if err != nil {
		return nil, fmt.Errorf("read control tar: %s: %w", ManifestName, err)
	}
	m, err := ParseManifest(js)
	if err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	buf := make([]byte, 64<<10)
	var label []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read control tar: %w", err)
		}
		// backup_label is kept as it is read, by check or through.
		var data io.Reader = tr
		var lb *bytes.Buffer
		if path.Clean(hdr.Name) == ControlBackupLabel && hdr.Typeflag == tar.TypeReg && hdr.Size <= maxLabelSize {
			lb = &bytes.Buffer{}
			data = io.TeeReader(tr, lb)
		}
		if check != nil {
			if err := check(m, hdr, data); err != nil {
				return nil, err
			}
		}
		if _, err := io.CopyBuffer(io.Discard, data, buf); err != nil {
			return nil, fmt.Errorf("read control tar: member %s: %w", Quoted(hdr.Name), err)
		}
		if lb != nil {
			label = append([]byte{}, lb.Bytes()...)
		}
	}
	// The tar reader stops at the end-of-archive blocks; the padding after
	// them still goes through the size limit and the codec's checks.
	if _, err := io.CopyBuffer(io.Discard, lr, buf); err != nil {
		return nil, fmt.Errorf("read control tar: %w", err)
	}
	c := &Control{Manifest: m, Size: lr.n, Label: label}
	h.Sum(c.Sum[:0])
	return c, nil
}

// ReadControl reads the control object key of a's store with the codec (see
// the package function ReadControl).
func (a *Archive) ReadControl(ctx context.Context, key string, check ControlCheck) (*Control, error) {
	rc, _, err := a.Codec.Open(ctx, a.Store, key)
	if err != nil {
		return nil, fmt.Errorf("open control object %s: %w", key, err)
	}
	defer rc.Close()
	c, err := ReadControl(rc, check)
	if err != nil {
		return nil, fmt.Errorf("control object %s: %w", key, err)
	}
	return c, nil
}

// controlReader hashes and counts what it reads, failing past max bytes.
type controlReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64
	max int64
}

func (c *controlReader) Read(p []byte) (int, error) {
	if rest := c.max - c.n + 1; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return 0, fmt.Errorf("decodes to more than %d bytes: %w", c.max, ErrControlLimit)
	}
	c.h.Write(p[:n])
	return n, err
}
