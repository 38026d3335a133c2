package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/metrics"
	"github.com/hoardbackup/hoard/walstream"
)

// This file looks, at the daemon's start and at each reload, at the
// spools of sites the daemon does not run: <root>/<site>/xlog_incoming
// under each backup_location of its sites (spoolRoots). A streaming site
// removed from the configuration while its spool held WAL that no run
// stored (a reload refuses that, but a restart with the site gone from
// the file does not ask) leaves WAL the server was told is flushed, and
// may have recycled, in a folder nothing reads: the new daemon would say
// nothing, forever. Such a spool (walstream.SpoolUnstored: complete
// segments, .history files, .partial files a run stores whole, and the
// segment in progress holding WAL) is logged at error level with its
// files and what to do, shown in /status orphan_spools and
// hoard_orphan_spool_files, and raises orphan_spool_error, until a start
// or reload finds it empty or gone. Nothing here writes into it, moves or
// deletes a file.
//
// A spool another daemon streams into right now (another configuration,
// another host on a shared disk) holds its lock (lockSpool): it is not
// orphaned and is passed over (isLocked); one whose lock file cannot be
// opened or locked (a permission, EIO) is not known to be, and is
// reported with that error (OrphanSpool.LockError). The segment in progress a site
// of this process left when a reload removed it, its WAL all stored
// (leftSpools), is not counted either: its stop stored the copy. Nor is
// one a stop of any process stored, when the spool's marker of that copy
// matches the file (walstream.StoredMarkerName, SpoolUnstored).

// orphanSpoolDir is the spool folder's name in a site's folder.
const orphanSpoolDir = "xlog_incoming"

// orphanSkip are the folders of a site's folder that hold no spool, not
// walked: the daemon's test restores and basebackup spool, and the
// folders of a site's objects (archive.SiteDirs) in the local store that
// falls back to backup_location (basebackup_delta alone holds an object
// for each large file of every delta backup).
var orphanSkip = func() map[string]bool {
	m := map[string]bool{"restore-test": true, "basebackup_incoming": true}
	for _, d := range archive.SiteDirs {
		m[d] = true
	}
	return m
}()

// orphanMaxDepth bounds how deep a site's name may nest under a root
// (eu/main is 2).
const orphanMaxDepth = 6

// OrphanSpool is a spool of a site the daemon does not run that holds WAL
// no run is known to have stored (Status.OrphanSpools).
type OrphanSpool struct {
	// Site is the spool's folder under its backup_location: the name
	// of the site that streamed into it.
	Site  string   `json:"site"`
	Spool string   `json:"spool"`
	Files []string `json:"files"`
	// LockError is why the spool's lock file could not be opened or
	// locked (isLocked): whether a daemon streams into it now is not
	// known. "" when the lock says no daemon does.
	LockError string `json:"lock_error,omitempty"`
}

// spoolRoots returns the backup_location folders of sites: a site's
// folder is <root>/<site>, its spool <root>/<site>/xlog_incoming.
func spoolRoots(sites []Site) []string {
	var roots []string
	for _, s := range sites {
		for _, p := range []string{s.Dir, strings.TrimSuffix(s.SpoolDir, string(filepath.Separator)+orphanSpoolDir)} {
			if p == "" || p == s.SpoolDir {
				continue
			}
			if root, ok := strings.CutSuffix(filepath.Clean(p), string(filepath.Separator)+filepath.Clean(s.Name)); ok && root != "" {
				roots = append(roots, root)
			}
		}
	}
	slices.Sort(roots)
	return slices.Compact(roots)
}

// findOrphanSpools returns the spools under the roots of sites that no
// site of sites streams into, that no other process holds locked, and
// that hold WAL no run is known to have stored. left holds the spools
// whose segment in progress a stop of this process stored (leftSpools).
// warn is given a spool's marker of a stored segment in progress that
// cannot be read (walstream.StoredMarkerName), which counts for nothing.
func findOrphanSpools(sites []Site, left map[string]bool, warn func(error)) []OrphanSpool {
	own := map[string]bool{}
	for _, s := range sites {
		if streamsWAL(s) {
			own[filepath.Clean(s.SpoolDir)] = true
		}
	}
	var out []OrphanSpool
	for _, root := range spoolRoots(sites) {
		_ = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				if path == root {
					return err
				}
				// A folder that cannot be read holds no spool this
				// daemon can look at; the others are walked.
				return nil
			}
			if !e.IsDir() || path == root {
				return nil
			}
			rel, _ := filepath.Rel(root, path)
			name := e.Name()
			if orphanSkip[name] || strings.HasPrefix(name, ".") || strings.Count(rel, string(filepath.Separator)) >= orphanMaxDepth {
				return filepath.SkipDir
			}
			if name != orphanSpoolDir {
				return nil
			}
			if own[path] {
				return filepath.SkipDir
			}
			locked, lockErr := isLocked(path)
			if locked {
				return filepath.SkipDir
			}
			files, leftover, err := walstream.SpoolUnstored(path, warn)
			if err != nil {
				files = []string{fmt.Sprintf("%s (cannot read it: %v)", path, err)}
			}
			if leftover != "" && !left[path] {
				files = append(files, leftover)
			}
			if site := filepath.Dir(rel); len(files) > 0 && site != "." {
				o := OrphanSpool{Site: site, Spool: path, Files: files}
				if lockErr != nil {
					o.LockError = lockErr.Error()
				}
				out = append(out, o)
			}
			return filepath.SkipDir
		})
	}
	return out
}

// isLocked tells whether another process holds the lock of the spool dir
// (lockSpool): a daemon streams into it now. It takes a shared lock for
// an instant, never creating or writing the lock file: a daemon starting
// on the spool in that instant is refused (ErrSpoolInUse) and tries again
// on its backoff. A lock file that cannot be opened or locked for another
// reason (a permission, EIO, a symbolic link lockSpool would refuse too)
// tells nothing: not locked, with the error, so that the spool is
// reported with it rather than passed over, its WAL hidden for good.
func isLocked(dir string) (bool, error) {
	path := filepath.Join(dir, spoolLockName)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open the spool's lock file: %w", err)
	}
	defer f.Close()
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); {
	case errors.Is(err, unix.EWOULDBLOCK):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("lock the spool's lock file %s: %w", path, err)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false, nil
}

// checkOrphanSpools looks for orphaned spools (findOrphanSpools) under
// the current sites' roots, logs each at error level and sets the status,
// metric and alert; those found before and not now are cleared.
func (d *daemon) checkOrphanSpools() {
	d.mu.Lock()
	sites := slices.Clone(d.sites)
	left := make(map[string]bool, len(d.leftSpools))
	for k := range d.leftSpools {
		left[k] = true
	}
	d.mu.Unlock()
	found := findOrphanSpools(sites, left, func(err error) {
		d.log.Warn().Err(err).Msg("cannot read the marker of a spool's stored segment in progress; its .partial counts as unstored")
	})
	d.mu.Lock()
	before := d.orphans
	d.orphans = found
	d.mu.Unlock()
	now := map[string]bool{}
	for _, o := range found {
		now[o.Spool] = true
		ev := d.log.Error()
		if o.LockError != "" {
			ev = ev.Str("lock_error", o.LockError+": whether a daemon streams into it now is not known; if one does, fix its lock file's access")
		}
		ev.Str("spool", o.Spool).Strs("files", o.Files).
			Str("hint", fmt.Sprintf("with the configuration that has site %[1]s (its object_storage and keys): add the site back and start or reload the daemon, whose run of it stores them, then remove it with a reload (which stores its wal before it lets it go); "+
				"or store each complete segment and .history file with hoard wal-push --config FILE --site %[1]s %[2]s/<file>; a .partial is the segment in progress when its last run ended, which no marker of a stored copy (.hoard-stored-partial) shows stored with these bytes: that run was killed, its storage failed at its stop, or it was a hoard older than the marker (its log says \"stored the segment in progress\" when it was stored). "+
				"Then move the folder out of backup_location and reload (systemctl reload hoard). hoard never moves or deletes these files", o.Site, o.Spool)).
			Msg("spool of a site this daemon does not run holds wal that no run is known to have stored (the server was told it is flushed and may have recycled it)")
		orphanSpoolMetric(d.metrics, o.Site).Set(float64(len(o.Files)))
		d.setAlert(AlertOrphanSpool, o.Spool, true)
	}
	for _, o := range before {
		if !now[o.Spool] {
			d.log.Info().Str("spool", o.Spool).Msg("spool of a site this daemon does not run no longer holds wal that no run stored")
			d.metrics.Remove(MetricOrphanSpoolFiles, map[string]string{"site": o.Site})
			d.setAlert(AlertOrphanSpool, o.Spool, false)
		}
	}
	if len(found) == 0 && len(before) == 0 {
		// A file an earlier run left, whose spool is stored since.
		d.setAlert(AlertOrphanSpool, "", false)
	}
}

// orphanSpoolMetric is the number of files of an orphaned spool.
func orphanSpoolMetric(m *metrics.Registry, site string) *metrics.Gauge {
	return m.Gauge(MetricOrphanSpoolFiles, "Files in the spool (<backup_location>/<site>/xlog_incoming) of a site this daemon does not run that hold WAL no run is known to have stored, as the daemon's start or last reload found them; see orphan_spools in /status.", map[string]string{"site": site})
}
