package basebackup

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrInPlaceTablespace is returned (wrapped) for a cluster with an
// in-place tablespace, which hoard does not back up.
var ErrInPlaceTablespace = errors.New("in-place tablespace")

// userTablespace is a row of pg_tablespace other than pg_default and
// pg_global: its OID, name and pg_tablespace_location.
type userTablespace struct {
	oid      uint32
	name     string
	location string
}

// userTablespaces lists the cluster's tablespaces besides pg_default and
// pg_global, and refuses the cluster (ErrInPlaceTablespace) when one of
// them is in place: a directory pg_tblspc/<oid> in the data directory,
// not a link, made with the developer option allow_in_place_tablespaces
// (pg_tablespace_location names it "pg_tblspc/<oid>", relative to the
// data directory).
// BASE_BACKUP leaves such a tablespace out of its tablespace list
// (do_pg_backup_start takes links only; seen on 13 and 15: the backup
// held neither its files nor a word of it) or, from 18, lists it with
// that relative location, which no restore can place; local-tar reads
// tablespaces through their links. Every mode calls it before the backup
// starts, so nothing is stored.
func userTablespaces(ctx context.Context, sql *pgx.Conn) ([]userTablespace, error) {
	rows, err := sql.Query(ctx, "SELECT oid, spcname, pg_tablespace_location(oid) FROM pg_tablespace "+
		"WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid")
	if err != nil {
		return nil, fmt.Errorf("basebackup: query tablespaces: %w", err)
	}
	var out []userTablespace
	var ts userTablespace
	_, err = pgx.ForEachRow(rows, []any{&ts.oid, &ts.name, &ts.location}, func() error {
		out = append(out, ts)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("basebackup: query tablespaces: %w", err)
	}
	var inPlace []string
	for _, ts := range out {
		// pg_tablespace_location returns a link's target as it reads it
		// (a relative one too, which local-tar resolves) and for an
		// in-place tablespace its directory relative to the data
		// directory (13 to 18), never a link's target: a target of
		// "pg_tblspc/<oid>" would lie below pg_tblspc itself.
		dir := "pg_tblspc/" + strconv.FormatUint(uint64(ts.oid), 10)
		if ts.location == "" || ts.location == dir {
			inPlace = append(inPlace, strconv.Quote(ts.name)+" ("+dir+")")
		}
	}
	if len(inPlace) > 0 {
		return nil, fmt.Errorf("basebackup: tablespace %s is in place, a directory in pg_tblspc rather than a link, "+
			"as the developer option allow_in_place_tablespaces makes: hoard does not back such a tablespace up "+
			"(BASE_BACKUP leaves it out or names no place for it, and a backup without its files would restore a broken cluster); "+
			"move its tables and indexes to pg_default or to a tablespace with a LOCATION (ALTER TABLE ... SET TABLESPACE, "+
			"ALTER INDEX ... SET TABLESPACE) and drop it: %w", strings.Join(inPlace, ", "), ErrInPlaceTablespace)
	}
	return out, nil
}
