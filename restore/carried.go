package restore

import "github.com/hoardbackup/hoard/replication"

// Setting is a configuration setting: its name and value.
type Setting struct {
	Name, Value string
}

// carriedSettings are the standby settings a backup's configuration may
// hold (a backup of a standby, or of a cluster restored as one) that the
// recovery block does not always override, in the order Carried names
// them.
var carriedSettings = []string{"primary_conninfo", "primary_slot_name", "recovery_end_command", "archive_cleanup_command", "recovery_min_apply_delay"}

// Carried returns the settings of carriedSettings that settings (what
// ServerSettings reads from a directory WriteRecoveryConfig configured
// with c) holds with a value other than their default, and that c's block
// does not set: the restored configuration carries them from the backup's.
// primary_conninfo comes with its password redacted, and as a placeholder
// when it does not parse. Restoring a standby from its own backup needs
// them; a copy restored as a standby streams from the source's primary,
// on the source's replication slot, unless told otherwise.
func (c RecoveryConfig) Carried(settings map[string]string) []Setting {
	var out []Setting
	for _, name := range carriedSettings {
		v := settings[name]
		if v == "" || c.writes(name) || name == "recovery_min_apply_delay" && v == "0" {
			continue
		}
		if name == "primary_conninfo" {
			v = replication.RedactConnString(v)
		}
		out = append(out, Setting{Name: name, Value: v})
	}
	return out
}

// writes tells whether c's block sets the setting name of carriedSettings.
func (c RecoveryConfig) writes(name string) bool {
	switch name {
	case "primary_conninfo":
		return c.PrimaryConnInfo != ""
	case "recovery_end_command", "archive_cleanup_command", "recovery_min_apply_delay":
		return !c.Standby || name == "recovery_end_command" && c.RecoveryEndCommand != ""
	}
	return false
}

// String returns s as a line of postgresql.auto.conf: name = 'value'.
func (s Setting) String() string {
	return s.Name + " = " + quote(s.Value)
}
