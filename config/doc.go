// Package config loads hoard's configuration: PGHoard's JSON file
// (pghoard/config.py and rohmu's object_storage keys), so a PGHoard
// quick-start file works unchanged, plus HOARD_* environment overrides so a
// container needs no file at all.
//
// Load applies, in order, PGHoard's defaults (New), the file, then the
// environment (EnvVars), fills the defaults that depend on other values
// (site prefix <path_prefix>/<site>, restore_prefetch, alert_file_dir, the
// fallback local storage at backup_location for a site without
// object_storage) and validates the result. Validation collects every
// problem, each with its JSON path, into a *ValidationError. Unknown keys are
// not errors, but they are not dropped silently either: Config.Warnings lists
// them. Config.Source tells whether a value came from the defaults, the file
// or which variable.
//
// Connections: a node is a libpq keyword object, a keyword/value string or a
// URI; Node.ConnString gives a string for pgconn.ParseConfig, which also
// applies libpq's PG* variables and ~/.pgpass. A site with no node gets one
// empty node, so PGHOST, PGUSER and friends alone are enough.
//
// Keys: the package carries encryption keys as PEM strings and never parses
// them; crypto/ does. AddEncryptionKey edits a file in place, keeping every
// other key, for `hoard create-keys`.
//
// Other packages do not import config: commands turn a *Site into each
// package's own Options.
package config
