package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"2026-01-02_03-00_0", "2026-01-02_03-00_0"},
		{"ünïcode 名前", "ünïcode 名前"},
		{"a\nb\tc\r", `a\nb\tc\r`},
		{"x\x1b[2Ky\x07", `x\x1b[2Ky\a`},
		{"evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"\u0085next line", `\u0085next line`},
	} {
		if got := printable(tc.in); got != tc.want {
			t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// forged is a backup name someone who can write the storage chose: it
// ends the line, forges one, and erases the terminal's line.
const forged = "2026-01-02_00-00_0\n2026-01-03_00-00_0  s  4 MiB  OK backup verified\x1b[2K\x1b]0;pwned\x07"

// TestCommands_PlantedNameOutput: a backup name, metadata value and
// error someone planted in the storage cannot forge a line or send an
// escape to the terminal through hoard list, list -v, retention
// --dry-run, verify, or the error restore prints when that backup is
// named.
func TestCommands_PlantedNameOutput(t *testing.T) {
	store := t.TempDir()
	cfg := writeSiteConfig(t, localConfig(store))
	st := storage.NewLocal(store)
	ctx := context.Background()
	put := func(name string, md storage.Metadata) {
		if err := st.Put(ctx, archive.Layout{Prefix: "s"}.BackupKey(name), strings.NewReader("x"), md); err != nil {
			t.Fatal(err)
		}
	}
	put("2026-01-01_00-00_0", storage.Metadata{"format": "pghoard-bb-v2", "start-time": "2026-01-01T00:00:00+00:00",
		"start-wal-segment": "000000010000000000000002"})
	put(forged, storage.Metadata{"format": "pghoard-bb-v2", "start-time": "2026-01-02T00:00:00+00:00",
		"start-wal-segment": "000000010000000000000003", "host": "h\n2026-01-03_00-00_0 OK\x1b[1A"})
	put(forged+"x", storage.Metadata{"format": "pghoard-bb-v2", "start-time": "garbage\x1b[2K"})

	for name, args := range map[string][]string{"List": {"list"}, "ListVerbose": {"list", "-v"},
		"Retention": {"retention", "--dry-run"}, "Verify": {"verify"},
		"RestoreError": {"restore", "--basebackup", forged + "x", "--target-dir", t.TempDir()}} {
		t.Run(name, func(t *testing.T) {
			app := App("test")
			var out bytes.Buffer
			app.Writer, app.ErrWriter = &out, &out
			err := app.RunContext(ctx, OrderArgs(app, append([]string{"hoard", "--config", cfg}, args...)))
			if err != nil {
				fmt.Fprintln(&out, "hoard:", ErrorMessage(err))
			}
			if strings.ContainsAny(out.String(), "\x1b\x07") {
				t.Errorf("output holds a terminal escape:\n%q", out.String())
			}
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.HasPrefix(l, "2026-01-03_00-00_0") {
					t.Errorf("a planted name forged the line %q:\n%s", l, out.String())
				}
			}
		})
	}
}

// TestErrorMessage_Lines: hoard's own multi-line errors keep their lines,
// indented; a newline or escape in what they quote is escaped.
func TestErrorMessage_Lines(t *testing.T) {
	err := fmt.Errorf("backup %s: %w", "b\x1b[2K", errors.Join(errors.New("first"), errors.New("second")))
	if got, want := ErrorMessage(err), `backup b\x1b[2K: first`+"\n  second"; got != want {
		t.Errorf("ErrorMessage = %q, want %q", got, want)
	}
}
