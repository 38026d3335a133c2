package command

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hoardbackup/hoard/wal"
)

// TestWALFetch_PGControlReadOnce: one wal-fetch opens the data
// directory's global/pg_control once, and takes its system identifier,
// timeline, REDO location and WAL segment size from that one read (the
// startup process rewrites the file between calls, and answers from two
// reads could come from two versions of it). Counted by the kernel
// (inotify IN_OPEN), with no seam in the code: a delivered segment, and a
// segment --archived-through (read at pg_control's segment size) says was
// archived and is gone, whose check reads the system and timeline too.
func TestWALFetch_PGControlReadOnce(t *testing.T) {
	const name = "000000010000000000000003"
	cfg := writeSiteConfig(t, localConfig(t.TempDir()))
	pushSegment(t, cfg, name)
	pgdata := t.TempDir()
	if err := os.Mkdir(filepath.Join(pgdata, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pgdata, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	writePGControl(t, pgdata, 1<<20)
	control := filepath.Join(pgdata, "global", "pg_control")
	b, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(b[wal.ControlSystemIDOffset:], 7123456789012345678) // waltest's
	binary.LittleEndian.PutUint32(b[288:], wal.ControlCRC(b[:288]))
	if err := os.WriteFile(control, b, 0o600); err != nil {
		t.Fatal(err)
	}
	opens := watchOpens(t, control)
	dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
	for _, c := range []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"Delivered", []string{name, dest}, ExitOK, ""},
		{"Lost", []string{"--archived-through", "000000010000000000000005", "000000010000000000000004", dest}, exitWALFatal, "no copy of it is stored now"},
	} {
		t.Run(c.name, func(t *testing.T) {
			opens()
			args := append([]string{"--config", cfg, "wal-fetch"}, c.args...)
			if code, msg := runErr(t, args...); code != c.want || !strings.Contains(msg, c.msg) {
				t.Fatalf("hoard %v: exit %d, %q; want %d, %q", args, code, msg, c.want, c.msg)
			}
			if n := opens(); n != 1 {
				t.Errorf("hoard %v opened %s %d times; want once", args, control, n)
			}
		})
	}
}

// watchOpens watches the file at path with inotify and returns a function
// that returns how many times the file was opened since its last call (or
// since watchOpens). The kernel merges an event into the last one queued
// when the two are the same, so closes are watched too: opens one after
// the other, each closed before the next, queue open, close, open, close,
// and none is merged.
func watchOpens(t testing.TB, path string) func() int {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify_init1: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if _, err := syscall.InotifyAddWatch(fd, path, syscall.IN_OPEN|syscall.IN_CLOSE); err != nil {
		t.Fatalf("inotify_add_watch %s: %v", path, err)
	}
	buf := make([]byte, 64*(syscall.SizeofInotifyEvent+syscall.NAME_MAX+1))
	return func() int {
		t.Helper()
		opens := 0
		for {
			n, err := syscall.Read(fd, buf)
			if errors.Is(err, syscall.EAGAIN) {
				return opens
			}
			if err != nil {
				t.Fatalf("read inotify events of %s: %v", path, err)
			}
			// struct inotify_event: wd, mask, cookie, len, then len bytes
			// of name (none for a watched file).
			for at := 0; at+syscall.SizeofInotifyEvent <= n; {
				mask := binary.NativeEndian.Uint32(buf[at+4:])
				if mask&syscall.IN_Q_OVERFLOW != 0 {
					t.Fatalf("inotify events of %s overflowed", path)
				}
				if mask&syscall.IN_OPEN != 0 {
					opens++
				}
				at += syscall.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[at+12:]))
			}
		}
	}
}
