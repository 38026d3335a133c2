package restore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	// standby: see Options.TargetAction.
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

// PGMajor reads the PostgreSQL major version from dir/PG_VERSION.
func PGMajor(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "PG_VERSION"))
	if err != nil {
		return 0, fmt.Errorf("read PG_VERSION: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if maj, _, ok := strings.Cut(v, "."); ok {
		v = maj // 9.6 and older
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("read PG_VERSION: %q is not a version", string(b))
	}
	return n, nil
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
	major, err := PGMajor(dir)
	if err != nil {
		return err
	}
	if major < 13 {
		return fmt.Errorf("data directory %s is PostgreSQL %d; hoard restores 13 and later: %w", dir, major, ErrUnsupportedVersion)
	}
	name := filepath.Join(dir, "postgresql.auto.conf")
	old, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", name, err)
	}
	var out bytes.Buffer
	out.Write(removeBlock(old))
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	out.WriteByte('\n')
	out.WriteString(c.block())
	if err := writeFileSync(name, out.Bytes(), 0o600); err != nil {
		return err
	}
	signal, other := "recovery.signal", "standby.signal"
	if c.Standby {
		signal, other = other, signal
	}
	if err := os.Remove(filepath.Join(dir, other)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", other, err)
	}
	return writeFileSync(filepath.Join(dir, signal), nil, 0o600)
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
	t := c.Target
	switch {
	case t.Immediate:
		set("recovery_target", "immediate")
	case !t.Time.IsZero():
		set("recovery_target_time", t.Time.UTC().Format("2006-01-02 15:04:05.999999")+"+00")
	case t.XID != 0:
		set("recovery_target_xid", strconv.FormatUint(t.XID, 10))
	case t.Name != "":
		set("recovery_target_name", t.Name)
	case t.LSN != 0:
		set("recovery_target_lsn", t.LSN.String())
	}
	if t.Inclusive != nil {
		set("recovery_target_inclusive", strconv.FormatBool(*t.Inclusive))
	}
	if !t.IsZero() {
		action := c.TargetAction
		if action == "" && !c.Standby {
			action = ActionPromote
		}
		if action != "" {
			set("recovery_target_action", action)
		}
	}
	if c.PrimaryConnInfo != "" {
		set("primary_conninfo", c.PrimaryConnInfo)
	}
	if c.RecoveryEndCommand != "" {
		set("recovery_end_command", c.RecoveryEndCommand)
	}
	if c.ArchiveOff {
		set("archive_mode", "off")
	}
	b.WriteString(confFooter + "\n")
	return b.String()
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

// writeFileSync writes data to name and fsyncs it.
func writeFileSync(name string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
