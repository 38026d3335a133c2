package replication

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgconn"
)

// A passfile that group or others may read is ignored, as libpq ignores
// it (PasswordFromFile in src/interfaces/libpq/fe-connect.c: "password
// file ... has group or world access; permissions should be u=rw (0600)
// or less"), and so is one that is not a plain file. pgconn reads any.

// SecurePassfile returns connString made to read no passfile when the
// one pgconn would read (the string's passfile, else PGPASSFILE, else
// ~/.pgpass) is not a plain file or has group or world access, and,
// when that file held the password pgconn would have used, a note that
// names the file and the fix, for the error of a connection that then
// fails (PassfileNote). Otherwise it returns connString and "". A
// service file's passfile is not looked at.
func SecurePassfile(connString string) (string, string) {
	path := passfilePath(connString)
	if path == "" {
		return connString, ""
	}
	fi, err := os.Stat(path)
	if err != nil {
		return connString, "" // pgconn reads nothing either
	}
	var why string
	switch {
	case !fi.Mode().IsRegular():
		why = fmt.Sprintf("password file %q is not a plain file and was ignored, as libpq ignores it", path)
	case fi.Mode().Perm()&0o077 != 0:
		why = fmt.Sprintf("password file %q has group or world access (%04o) and was ignored, as libpq ignores it: "+
			"permissions should be u=rw (0600) or less (chmod 0600 %s)", path, fi.Mode().Perm(), path)
	default:
		return connString, ""
	}
	without, ok := withParam(connString, "passfile", os.DevNull)
	if !ok {
		return connString, ""
	}
	before, err1 := pgconn.ParseConfig(connString)
	after, err2 := pgconn.ParseConfig(without)
	if err1 != nil || err2 != nil {
		return without, ""
	}
	// Only a password the file gave is lost; say so only then, as
	// libpq warns only when it would have used the file.
	if before.Password == after.Password && replicationPassword(connString) == replicationPassword(without) {
		return without, ""
	}
	return without, why
}

// withParam returns connString with its parameter key set to value: in
// a URI's query, or appended to a keyword/value string (where the last
// of a keyword counts).
func withParam(connString, key, value string) (string, bool) {
	if !IsURI(connString) {
		return connString + " " + key + "=" + quoteConnValue(value), true
	}
	u, err := url.Parse(connString)
	if err != nil {
		return "", false
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), true
}

// PassfileNote adds note (from SecurePassfile) to err, the error of a
// connection that failed; err as it is when note is "".
func PassfileNote(err error, note string) error {
	if note == "" || err == nil {
		return err
	}
	return fmt.Errorf("%w; %s", err, note)
}

// passfilePath returns the passfile pgconn reads for connString: its
// passfile parameter, else PGPASSFILE, else ~/.pgpass ("" when there
// is no home directory).
func passfilePath(connString string) string {
	if IsURI(connString) {
		if u, err := url.Parse(connString); err == nil && u.Query().Has("passfile") {
			return u.Query().Get("passfile")
		}
	} else if kv, err := ParseConnString(connString); err == nil {
		if p, ok := kv["passfile"]; ok {
			return p
		}
	}
	if p := os.Getenv("PGPASSFILE"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".pgpass")
}
