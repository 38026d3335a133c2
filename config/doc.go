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
// them, as it lists keys given twice in one object (the last one is used,
// as in PGHoard). Config.Source tells whether a value came from the defaults, the file
// or which variable.
//
// # The schema
//
// Every key is one row of the schema in schema.go (the key type, key.go),
// and its JSON type is its field's Go type (kinds.go). Decoding, the
// environment overrides, `hoard config show` (Values), the checks and the
// reference docs/configuration.md (Keys, EnvVars) all read the rows.
// docs/architecture.md follows a key through them and says how to add one.
//
// Connections: a node is a libpq keyword object, a keyword/value string or a
// URI; Node.ConnString gives a string for pgconn.ParseConfig, which also
// applies libpq's PG* variables and ~/.pgpass. A site with no node gets one
// empty node, so PGHOST, PGUSER and friends alone are enough.
//
// Keys: the package carries encryption keys as PEM strings and never parses
// them; crypto/ does. `hoard create-keys` adds a key pair to a file itself
// (command/configedit.go).
//
// Only command (and docs/gen) imports config, and config imports only the
// leaves compress, replication and storage: commands turn a *Site into each
// package's own Options; ObjectStorage embeds the storage.Config. The values
// a key takes come from the package that uses them: compression algorithms
// from compress, storage types, Azure clouds and Swift's auth versions and
// endpoint types from storage.
package config
