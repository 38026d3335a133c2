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
// # The schema
//
// Every key is one row of the schema in schema.go: its JSON name, the Go
// field it fills, its default, its HOARD_* variable, whether it is a
// secret, the range a number must be in, and its documentation. A key's
// JSON type is its field's Go type (kinds.go). Decoding the file, the
// environment overrides, `hoard config show` (Config.Values), the range
// checks and the reference docs/configuration.md (Keys and EnvVars) all
// read the rows, so none of them can miss a key.
//
// # Adding a key
//
//  1. Add a field to the struct that holds the key: Config for a top-level
//     key, Site for a key of a site, ObjectStorage for a storage key (and to
//     storage.Config, with the key as its json tag), or a new struct for a
//     new object (a struct field, a pointer to one for an object that is
//     off when null, or a map of them for objects by name).
//  2. Add a row to that struct's table in schema.go: name, field and doc;
//     def when the default is not the zero value (defDoc when it is
//     computed); env and envDoc for a HOARD_* variable (a site key's
//     variable applies to the selected site); secret for a credential,
//     which config show masks and whose variable may name a file
//     (<env>_FILE); valid for the range of a number; types for a storage
//     key, which then gets a HOARD_<TYPE>_<KEY> variable per type.
//  3. A rule that is not a range (a list of names, two keys set together,
//     a file that must exist) goes into validate.go, reported at the key's
//     JSON path.
//  4. Run `go generate ./docs` to regenerate docs/configuration.md.
//
// TestSchema checks that every row fits its field; TestEnvVars that every
// variable changes something (give a new variable that is not a string a
// valid value there). A field of a type kinds does not list yet
// needs an entry there: how it is read from JSON and from a variable. A new
// storage type needs a row in storageTypes, its keys' types, and its checks
// in ObjectStorage.validate.
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
// package's own Options; ObjectStorage.StorageConfig is the storage.Config.
package config
