package wal

import (
	"context"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// lsnInputs are forms an operator may type for an LSN, those PostgreSQL
// reads and those it refuses.
var lsnInputs = []string{
	"0/3000060", "0/3000060", "16/B374D848", "16/b374d848", "FFFFFFFF/FFFFFFFF", "00000000/00000000",
	"0/0", "1/0", "0/1",
	"", "/", "0/", "/0", "0", "3000060", "0/3000060G", "0/3000060/0", "0/30000G0",
	"100000000/3000060", "0/100000000", "0/003000060", "0x0/3000060", "0/0x3000060",
	"+0/3000060", "-0/3000060", " 0/3000060", "0/3000060 ", "0 /3000060", "0/ 3000060",
	"0/3000060\n", "0//3000060", "G/0", "0/300006O",
}

// TestParseLSN compares ParseLSN with PostgreSQL's own reading of each
// input as pg_lsn: it accepts exactly what PostgreSQL accepts, with the
// same value.
func TestParseLSN(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: 15})
	conn := c.Connect(t, "postgres")
	ctx := context.Background()
	for _, s := range lsnInputs {
		var pg string
		pgErr := conn.QueryRow(ctx, "select $1::text::pg_lsn::text", s).Scan(&pg)
		got, err := ParseLSN(s)
		switch {
		case pgErr != nil && err == nil:
			t.Errorf("ParseLSN(%q) = %s, PostgreSQL refuses it: %v", s, got, pgErr)
		case pgErr == nil && err != nil:
			t.Errorf("ParseLSN(%q): %v; PostgreSQL reads %s", s, err, pg)
		case pgErr == nil:
			want, perr := pglogrepl.ParseLSN(pg)
			if perr != nil {
				t.Fatalf("PostgreSQL's %s: %v", pg, perr)
			}
			if got != want {
				t.Errorf("ParseLSN(%q) = %s, PostgreSQL reads %s", s, got, pg)
			}
		}
	}
}

// FuzzParseLSN: whatever ParseLSN accepts prints back to the same LSN.
func FuzzParseLSN(f *testing.F) {
	for _, s := range lsnInputs {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		again, err := ParseLSN(l.String())
		if err != nil || again != l {
			t.Fatalf("ParseLSN(%q) = %s, which reads back as %s, %v", s, l, again, err)
		}
	})
}
