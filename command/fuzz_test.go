package command

import (
	"testing"
)

// FuzzRestoreTarget checks the parsing of hoard restore's recovery target
// flags: no input panics, and what is accepted is a valid target whose
// kind is the one given.
func FuzzRestoreTarget(f *testing.F) {
	f.Add("2026-01-02T03:04:05+02:00", "", "", "", "latest")
	f.Add("2026-01-02 03:04:05.5Z", "", "", "", "current")
	f.Add("", "4294967301", "", "", "2")
	f.Add("", "", "before upgrade", "", "")
	f.Add("", "", "", "0/3000060", "latest")
	f.Add("2026-01-02", "0", "x\ny", "zz/1", "-1")
	f.Fuzz(func(t *testing.T, tm, xid, name, lsn, timeline string) {
		var args []string
		for _, kv := range [][2]string{{"--target-time", tm}, {"--target-xid", xid}, {"--target-name", name}, {"--target-lsn", lsn}, {"--target-timeline", timeline}} {
			if kv[1] != "" {
				args = append(args, kv[0]+"="+kv[1])
			}
		}
		got, err := parseRestoreTarget(t, args...)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("accepted %v as %+v, which does not validate: %v", args, got, err)
		}
		if (tm != "") != !got.Time.IsZero() || (xid != "") != (got.XID != 0) || (lsn != "") != (got.LSN != 0) || name != got.Name {
			t.Fatalf("%v parsed as %+v", args, got)
		}
	})
}
