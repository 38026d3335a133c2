package wal

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// ParseLSN reads an LSN written as PostgreSQL's pg_lsn type reads it
// (pg_lsn_in_internal, src/backend/utils/adt/pg_lsn.c), which
// recovery_target_lsn's check also uses: two hexadecimal numbers of one
// to eight digits each, upper or lower case, separated by a slash, and
// nothing else (no sign, no 0x, no space). pglogrepl.ParseLSN scans with
// fmt.Sscanf, which stops at the first character that is not a digit and
// ignores what follows, and lets a ninth digit overflow: "5/3A00G0" is
// 5/3A00 to it, "100000000/0" is 0/0. An operator's target must mean to
// hoard what it means to PostgreSQL, so such input is an error here.
func ParseLSN(s string) (pglogrepl.LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("%q is not an LSN: want two hexadecimal numbers separated by a slash, such as 0/3000060", s)
	}
	h, herr := lsnHalf(hi)
	l, lerr := lsnHalf(lo)
	if herr != nil || lerr != nil {
		return 0, fmt.Errorf("%q is not an LSN: want two hexadecimal numbers of 1 to 8 digits separated by a slash, such as 0/3000060", s)
	}
	return pglogrepl.LSN(h<<32 | l), nil
}

// lsnHalf reads one half of an LSN: 1 to 8 hexadecimal digits only
// (pg_lsn.c MAXPG_LSNCOMPONENT).
func lsnHalf(s string) (uint64, error) {
	if len(s) < 1 || len(s) > 8 || strings.Trim(s, "0123456789abcdefABCDEF") != "" {
		return 0, fmt.Errorf("not 1 to 8 hexadecimal digits")
	}
	return strconv.ParseUint(s, 16, 32)
}
