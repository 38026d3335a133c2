package docs

import (
	"go/ast"
	"go/token"
	"slices"
	"strings"
	"testing"
)

// localWriters are the functions of hoard (outside tests and internal/)
// that create, open for writing or rename files themselves, each with why
// that is safe after a crash at any instant. Everything else writes
// through storage.WriteFileAtomic or storage.WriteFileIn (temporary file,
// fsync, rename, fsync of the directory), or their CreateFile forms
// (link instead of rename: never replacing). A new write of its own must say
// here why it needs none of that, or what it does instead.
var localWriters = map[string]string{
	// The durable write itself.
	"storage/writefile.go CreateTempIn": "O_EXCL temporary file of WriteFileIn and wal-fetch",
	"storage/writefile.go writeFileIn":  "the rename (WriteFileIn) or link (CreateFileIn) of the helper, after fsync; the directory fsynced after",
	// The local storage backend: temp, fsync, rename or link, fsync dir.
	// All in the object's directory opened through an os.Root of the
	// storage directory (objectDir): never through a link out of it.
	"storage/local.go createReplaceTemp":  "O_EXCL sidecar temp of Put, written and fsynced by writeFile",
	"storage/local.go doRename":           "Put's renames of fsynced temp files, each followed by a directory fsync",
	"storage/local.go Create":             "link(2) of fsynced temp files, then a directory fsync",
	"storage/local.go linkData":           "link(2) of an fsynced temp file; Create fsyncs the directory",
	"storage/locallock.go openLockFile":   "the empty lock file of an object directory, only flock'ed",
	"storage/locallock.go openParentLock": "opens, never creates, the empty lock file of the storage directory's parent, only flock'ed",
	// SFTP: remote files, fsynced when the server can (fsync@openssh.com).
	"storage/sftp.go writeRemote": "O_EXCL remote temp file, fsynced when the server can",
	"storage/sftp.go syncRemote":  "opens a remote file only to fsync it",
	"storage/sftp.go replace":     "renames fsynced remote temp files into place",
	"storage/sftp.go Create":      "renames fsynced remote temp files into place",
	"storage/sftp.go placeNew":    "links (or renames) an fsynced remote temp file into place, only where no file has the name",
	// The WAL receiver's spool: segments are fsynced before the server
	// hears they are flushed (walstream/segment.go names the crash windows).
	"walstream/spool.go openSegment":       "the .partial segment: created then fsynced with its directory, removed when its preallocation or either fsync fails (fatal when it cannot be); never counted as complete",
	"walstream/spool.go rename":            "renames an fsynced full segment; completeSegment fsyncs the directory",
	"walstream/segment.go completeSegment": "renames a segment back to .partial when the directory fsync failed",
	"walstream/segment.go completeChecked": "a full segment its caller checked (every record: wholeWAL): fsyncs, renames, fsyncs the directory",
	"walstream/upload.go copySnapshot":     "a scratch copy for an upload of the growing segment, removed by cleanSpool at start; the fsynced .partial is the source",
	// The daemon's locks of a site's spool and folder (one daemon per
	// spool, per site).
	"daemon/spoollock.go lockDir": "the spool's or site folder's flock file; the pid written in it only names the holder in a second daemon's error: a torn or lost pid costs that name, never the lock",
	// wal-fetch: %p and the prefetch spool, through os.Root.
	"archive/walfetch.go fetchKeyOnce":      "checked, fsynced temp file renamed to %p, then the directory fsynced",
	"archive/walfetch.go take":              "renames a spooled, fsynced segment to %p, then fsyncs the directory",
	"archive/walfetch.go want":              "a hint for the prefetch worker: a lost or stale one only costs speed",
	"archive/walfetch.go lock":              "the worker's flock file, never read",
	"archive/walfetch.go CreateSpoolFile":   "the prefetch worker's log",
	"archive/fetchtemp.go createLockedTemp": "opens its own O_EXCL temp file again for writing only to flock it (NFSv4 grants no exclusive lock otherwise); never writes through it",
	"archive/fetchtemp.go removeDeadTemp":   "opens a dead download's temp file for writing only to flock it (NFSv4), never writes through it, then removes it",
	// Delta basebackups stage each object in an unlinked temp file.
	"basebackup/delta.go stage":    "unlinked at once: nothing stays after a crash",
	"basebackup/spool.go newSpool": "a control object part spooled during or at the end of a backup (the chunks' member names, backup_manifest, the manifest's JSON, the control tar), unlinked at once: nothing stays after a crash",
	"restore/extract.go record":    "the list of a chunk's restored files past maxMadeFiles, for a retry; unlinked at once: nothing stays after a crash",
	// Restore: no file counts until pg_control, written last after syncfs
	// of every target file system (restore/extract.go writePGControl).
	"restore/extract.go writeFile":     "O_EXCL in an os.Root; synced by syncfs before pg_control",
	"restore/extract.go writeNew":      "O_EXCL in an os.Root; pg_control, written last",
	"restore/incremental.go writeFile": "applies an incremental file in an os.Root; synced by syncfs before pg_control",
	"restore/dirs.go writeTest":        "a probe of the target, removed at once",
	// verify --restore: its scratch directory, removed after the test.
	"verify/testrestore.go configure": "configuration of a throwaway cluster in a private scratch directory",
	"verify/scratch.go newScratch":    "the empty lock file of a scratch directory, only flock'ed",
	// Not hoard's data: the demo's throwaway cluster, docs/'s generator.
	"demo/demo.go configure":      "the demo's throwaway files",
	"demo/demo.go copyFile":       "the demo's throwaway files",
	"demo/postgres.go appendConf": "the demo's throwaway files",
	"docs/gen/main.go main":       "generated documentation in the source tree",
}

// TestLocalWrites: no function outside localWriters writes a local file
// itself (os.Create, os.CreateTemp, os.WriteFile, a Link or Rename, an
// OpenFile for writing), so that every file hoard keeps goes through the
// durable helpers; and every entry of localWriters still writes.
func TestLocalWrites(t *testing.T) {
	fset := token.NewFileSet()
	found := map[string]bool{}
	walkSources(t, fset, func(rel string, f *ast.File) {
		if strings.HasPrefix(rel, "internal/") {
			return // test helpers
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok {
				continue
			}
			ast.Inspect(fn, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || !writesFile(call) {
					return true
				}
				name := rel + " " + fn.Name.Name
				found[name] = true
				if _, ok := localWriters[name]; !ok {
					t.Errorf("%s: %s writes a file itself; use storage.WriteFileAtomic or storage.WriteFileIn, "+
						"or add it to localWriters with why a crash at any instant is safe", fset.Position(call.Pos()), name)
				}
				return true
			})
		}
	})
	for name := range localWriters {
		if !found[name] {
			t.Errorf("localWriters lists %s, which writes no file any more", name)
		}
	}
	if len(found) == 0 {
		t.Fatal("no writes found: the walk missed the sources")
	}
}

// writesFile reports whether call creates, links, renames or opens for
// writing a file: os.Create, os.CreateTemp, os.WriteFile,
// ioutil.WriteFile, any Link or Rename (os, os.Root, an SFTP client), and
// any OpenFile (os, os.Root, SFTP), unix.Openat or storage's
// openatBeneath whose flags name a write.
func writesFile(call *ast.CallExpr) bool {
	var pkg, name string
	switch fun := call.Fun.(type) {
	case *ast.SelectorExpr:
		if id, ok := fun.X.(*ast.Ident); ok {
			pkg = id.Name
		}
		name = fun.Sel.Name
	case *ast.Ident:
		if fun.Name != "openatBeneath" {
			return false
		}
		name = "OpenFile"
	default:
		return false
	}
	switch name {
	case "Create", "CreateTemp", "WriteFile":
		return pkg == "os" || pkg == "ioutil"
	case "Rename", "Link":
		return true
	case "OpenFile", "Openat":
		if len(call.Args) < 2 {
			return false
		}
		writes := false
		for _, arg := range call.Args[1:] {
			ast.Inspect(arg, func(n ast.Node) bool {
				if s, ok := n.(*ast.SelectorExpr); ok && slices.Contains([]string{"O_WRONLY", "O_RDWR", "O_CREATE", "O_CREAT", "O_APPEND", "O_TRUNC"}, s.Sel.Name) {
					writes = true
				}
				return true
			})
		}
		return writes
	}
	return false
}
