package basebackup

import "testing"

// TestServerMember: the files the server names in its checksum warnings
// (sendDir and sendTablespace in basebackup.c) map to the backup's member
// names, which local-tar records.
func TestServerMember(t *testing.T) {
	spc := []tablespace{{oid: 16385, location: "/srv/ts", name: "extra"}, {oid: 16386, location: "/srv/ts2", name: "other"}}
	for _, tc := range []struct{ file, want string }{
		{"./base/5/16384", "pgdata/base/5/16384"},
		{"./global/1262", "pgdata/global/1262"},
		{"/srv/ts/PG_15_202209061/5/16390", "tablespaces/extra/PG_15_202209061/5/16390"},
		{"/srv/ts2/PG_15_202209061/5/16391.1", "tablespaces/other/PG_15_202209061/5/16391.1"},
		{"/elsewhere/PG_15_202209061/5/1", "/elsewhere/PG_15_202209061/5/1"},
	} {
		if got := serverMember(tc.file, spc); got != tc.want {
			t.Errorf("serverMember(%q) = %q, want %q", tc.file, got, tc.want)
		}
	}
}
