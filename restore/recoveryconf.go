package restore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// ErrUnsupportedVersion is returned (wrapped) for a data directory of a
// PostgreSQL major hoard does not support (below 13).
var ErrUnsupportedVersion = errors.New("unsupported PostgreSQL version")

// Target actions (recovery_target_action).
const (
	ActionPause    = "pause"
	ActionPromote  = "promote"
	ActionShutdown = "shutdown"
)

// Markers around the block hoard appends to postgresql.auto.conf.
const (
	confHeader = "# hoard created recovery configuration"
	confFooter = "# end of hoard recovery configuration"
)

// RecoveryConfig is what WriteRecoveryConfig writes.
type RecoveryConfig struct {
	RestoreCommand     string
	RecoveryEndCommand string
	PrimaryConnInfo    string
	Target             Target
	// TargetAction is recovery_target_action, written only with a target.
	// "" means promote for a primary and PostgreSQL's default (pause) for a
	// standby, written out so that a stale setting in the restored
	// configuration does not apply: see Options.TargetAction.
	TargetAction string
	Standby      bool
	// ArchiveOff writes archive_mode = 'off', so that a restored copy does
	// not archive its new timeline into the archive it came from (where its
	// history file would clash with the source's own later promotion).
	ArchiveOff bool
}

// validateAction checks a recovery_target_action value ("" allowed).
func validateAction(a string) error {
	switch a {
	case "", ActionPause, ActionPromote, ActionShutdown:
		return nil
	}
	return fmt.Errorf("%w: target action %q is not pause, promote or shutdown", ErrBadTarget, a)
}

// maxAutoConf bounds the postgresql.auto.conf WriteRecoveryConfig reads
// into memory (ALTER SYSTEM writes a few lines).
const maxAutoConf = 16 << 20

// PGMajor reads the PostgreSQL major version from dir/PG_VERSION, which
// must be a regular file of at most a few bytes: it is opened from dir
// without following a link, and its content is quoted in an error only as
// far as a version goes.
func PGMajor(dir string) (int, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, fmt.Errorf("read PG_VERSION: %w", err)
	}
	defer root.Close()
	return pgMajor(root)
}

func pgMajor(root *os.Root) (int, error) {
	b, err := readRegular(root, "PG_VERSION", 16)
	if err != nil {
		return 0, fmt.Errorf("read PG_VERSION: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if maj, _, ok := strings.Cut(v, "."); ok {
		v = maj // 9.6 and older
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("read PG_VERSION: %q is not a version", b)
	}
	return n, nil
}

// readRegular reads the regular file name under root, at most max bytes. A
// symbolic link or anything but a regular file is refused, as is a larger
// file; a missing one gives an error wrapping fs.ErrNotExist.
func readRegular(root *os.Root, name string, max int64) ([]byte, error) {
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%v): %w", name, fi.Mode().Type(), ErrUnsafeMember)
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAtMost(f, name, max)
}

// readAtMost reads r, the file name, to its end: an error when it holds
// more than max bytes.
func readAtMost(r io.Reader, name string, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over %d bytes", name, max)
	}
	return b, nil
}

// WriteRecoveryConfig configures the data directory dir for recovery: it
// appends hoard's block to postgresql.auto.conf (replacing a block an
// earlier run wrote) and creates recovery.signal, or standby.signal for a
// standby. PostgreSQL 12 moved recovery settings there from recovery.conf;
// hoard supports PostgreSQL 13 and later only.
func WriteRecoveryConfig(dir string, c RecoveryConfig) error {
	if err := c.Target.Validate(); err != nil {
		return err
	}
	if err := validateAction(c.TargetAction); err != nil {
		return err
	}
	if err := c.checkValues(); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer root.Close()
	major, err := pgMajor(root)
	if err != nil {
		return err
	}
	if major < 13 {
		return fmt.Errorf("data directory %s is PostgreSQL %d; hoard restores 13 and later: %w", dir, major, ErrUnsupportedVersion)
	}
	const name = "postgresql.auto.conf"
	old, err := readRegular(root, name, maxAutoConf)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", filepath.Join(dir, name), err)
	}
	var out bytes.Buffer
	out.Write(removeBlock(old))
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	out.WriteByte('\n')
	out.WriteString(c.block())
	if err := writeFileIn(root, name, out.Bytes(), 0o600); err != nil {
		return err
	}
	signal, other := "recovery.signal", "standby.signal"
	if c.Standby {
		signal, other = other, signal
	}
	// Remove deletes a link itself, never what it points to.
	if err := root.Remove(other); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", other, err)
	}
	return writeFileIn(root, signal, nil, 0o600)
}

// checkValues refuses the settings quote cannot write: a configuration
// file's string ends at the line (guc-file.l), so a line break would cut
// it, and a NUL ends the file's text.
func (c RecoveryConfig) checkValues() error {
	for _, v := range []struct{ name, value string }{
		{"restore_command", c.RestoreCommand},
		{"recovery_end_command", c.RecoveryEndCommand},
		{"primary_conninfo", c.PrimaryConnInfo},
	} {
		if strings.ContainsAny(v.value, "\n\r\x00") {
			return fmt.Errorf("%s holds a line break or NUL, which postgresql.auto.conf cannot hold", v.name)
		}
	}
	return nil
}

// block renders the settings, one per line, between the markers.
func (c RecoveryConfig) block() string {
	var b strings.Builder
	set := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, quote(v)) }
	b.WriteString(confHeader + "\n")
	if c.RestoreCommand != "" {
		set("restore_command", c.RestoreCommand)
	}
	tl := c.Target.Timeline
	if tl == "" {
		tl = "latest"
	}
	set("recovery_target_timeline", tl)
	// The restored configuration may already set a recovery target: a
	// cluster restored once keeps that restore's settings (PostgreSQL
	// never removes them), and ALTER SYSTEM rewrites postgresql.auto.conf
	// without the markers removeBlock looks for, so its backups carry
	// them as plain lines. Left alone, a stale recovery_target =
	// 'immediate' would end a restore to the end of the archive at the
	// backup's end and promote there. So every target setting is written
	// here, where it is the last line of its name and the only one
	// PostgreSQL applies (ProcessConfigFileInternal ignores earlier
	// duplicates): the unused ones empty, and first, since assigning any
	// of them while another kind is set fails with "multiple recovery
	// targets specified" (the assign hooks, xlogrecovery.c).
	t := c.Target
	name, value := t.setting()
	for _, k := range targetSettings {
		if k != name {
			set(k, "")
		}
	}
	if name != "" {
		set(name, value)
	}
	if !t.IsZero() && !t.Immediate {
		inclusive := true // PostgreSQL's default, which --target-inclusive documents
		if t.Inclusive != nil {
			inclusive = *t.Inclusive
		}
		set("recovery_target_inclusive", strconv.FormatBool(inclusive))
	}
	if !t.IsZero() {
		action := c.TargetAction
		if action == "" {
			action = ActionPromote
			if c.Standby {
				action = ActionPause // PostgreSQL's default
			}
		}
		set("recovery_target_action", action)
	}
	if !c.Standby {
		// PostgreSQL honours recovery_min_apply_delay in every archive
		// recovery (xlogrecovery.c recoveryApplyDelay): a delayed
		// standby's, carried by its backup, would hold back each commit
		// of a restore until it is that old, and its promotion with
		// them. A standby keeps the delay it is configured with.
		set("recovery_min_apply_delay", "0")
	}
	if c.PrimaryConnInfo != "" {
		set("primary_conninfo", c.PrimaryConnInfo)
	}
	switch {
	case c.RecoveryEndCommand != "":
		set("recovery_end_command", c.RecoveryEndCommand)
	case !c.Standby:
		// A backup of a standby carries the source's commands: its
		// recovery_end_command, a site script, would run at the end
		// of this recovery (CleanupAfterArchiveRecovery), and its
		// archive_cleanup_command, often pg_archivecleanup on the
		// source's archive, at each restartpoint of it
		// (CreateRestartPoint runs it in any archive recovery, not
		// only in standby mode). A standby keeps both, for rebuilding
		// a standby from its own backup; Carried names them.
		set("recovery_end_command", "")
	}
	if !c.Standby {
		set("archive_cleanup_command", "")
	}
	if c.ArchiveOff {
		set("archive_mode", "off")
	}
	b.WriteString(confFooter + "\n")
	return b.String()
}

// targetSettings are PostgreSQL's recovery target settings, of which at
// most one may be set (xlogrecovery.c error_multiple_recovery_targets).
var targetSettings = []string{"recovery_target", "recovery_target_lsn", "recovery_target_name", "recovery_target_time", "recovery_target_xid"}

// setting returns the name of t's recovery target setting and its value;
// "" for the zero Target.
func (t Target) setting() (name, value string) {
	switch {
	case t.Immediate:
		return "recovery_target", "immediate"
	case !t.Time.IsZero():
		return "recovery_target_time", t.pgTime().Format("2006-01-02 15:04:05.999999") + "+00"
	case t.XID != 0:
		return "recovery_target_xid", strconv.FormatUint(t.XID, 10)
	case t.Name != "":
		return "recovery_target_name", t.Name
	case t.LSN != 0:
		return "recovery_target_lsn", t.LSN.String()
	}
	return "", ""
}

// pgTime returns t.Time in UTC to the microsecond, the precision of
// PostgreSQL's timestamps, rounded so that recovery stops where t.Time
// says. Commit times are whole microseconds, and recoveryStopsBefore
// (xlogrecovery.c) stops before the first commit later than the target
// when inclusive, at or after it when not: a commit at or before t.Time
// is one at or before t.Time rounded down, and one at or after t.Time is
// one at or after it rounded up. Cut short either way, an exclusive
// target of 12:00:00.0000005 would stop before a commit at
// 12:00:00.000000, which the operator's time includes.
func (t Target) pgTime() time.Time {
	tm := t.Time.UTC()
	down := tm.Truncate(time.Microsecond)
	if t.Inclusive != nil && !*t.Inclusive && down.Before(tm) {
		return down.Add(time.Microsecond)
	}
	return down
}

// quote makes v a PostgreSQL configuration string: single quotes, with
// quotes and backslashes doubled (guc-file.l reads \ as an escape).
func quote(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// removeBlock drops an earlier hoard block (header to footer, and the blank
// line before it) from postgresql.auto.conf's contents.
func removeBlock(conf []byte) []byte {
	start := bytes.Index(conf, []byte(confHeader+"\n"))
	if start < 0 {
		return conf
	}
	end := bytes.Index(conf[start:], []byte(confFooter+"\n"))
	if end < 0 {
		end = len(conf)
	} else {
		end = start + end + len(confFooter) + 1
	}
	head := bytes.TrimSuffix(conf[:start], []byte("\n"))
	out := append([]byte{}, head...)
	if len(out) > 0 {
		out = append(out, '\n')
	}
	return append(out, conf[end:]...)
}

// writeFileIn replaces name, a file of root's top directory, with data
// of mode mode as storage.WriteFileIn does: never through a link, fsynced,
// renamed, the directory fsynced. A crash leaves the old file or the new
// one, and at worst a temporary file (.<name>.tmp-*) that PostgreSQL
// ignores.
func writeFileIn(root *os.Root, name string, data []byte, mode fs.FileMode) error {
	return storage.WriteFileIn(root, name, bytes.NewReader(data), func(f *os.File) error { return f.Chmod(mode) })
}
