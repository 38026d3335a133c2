package basebackup

import (
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRun_ErrInPlaceTablespace: a cluster with an in-place tablespace (a
// directory in pg_tblspc, made with the developer option
// allow_in_place_tablespaces) is refused before anything is stored, in
// BASE_BACKUP and local-tar mode, naming the tablespace. BASE_BACKUP
// leaves such a tablespace out of its list (13 and 14 at least), so a
// backup stored anyway would lack its files without a word; local-tar
// cannot read it as a link.
func TestRun_ErrInPlaceTablespace(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		t.Parallel()
		ctx := testContext(t)
		c, _ := pgtest.StartArchiving(t, pgtest.Options{Major: major, Conf: map[string]string{"allow_in_place_tablespaces": "on"}})
		c.Exec(t, "create tablespace inplace location ''")
		c.Exec(t, "create table in_place tablespace inplace as select generate_series(1, 1000) as i")
		for _, tc := range []struct {
			name string
			mode Mode
		}{{"BaseBackup", ModeStream}, {"LocalTar", ModeLocal}, {"Delta", ModeDelta}} {
			mode := tc.mode
			t.Run(tc.name, func(t *testing.T) {
				a := encryptedArchive(t, compress.LZ4)
				_, err := Run(ctx, Options{
					ConnString: c.ConnString("postgres"), Archive: a, Mode: mode, PGData: c.DataDir,
					Fast: true, ChunkSize: 1 << 20, Reason: ReasonScheduled,
					Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
				})
				if !errors.Is(err, ErrInPlaceTablespace) {
					t.Fatalf("Run of a cluster with an in-place tablespace in mode %v: %v, want ErrInPlaceTablespace", mode, err)
				}
				for _, want := range []string{`"inplace"`, "allow_in_place_tablespaces", "SET TABLESPACE"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %s", err, want)
					}
				}
				noObjectsLeft(t, a.Store, "the refused backup")
			})
		}
	})
}
