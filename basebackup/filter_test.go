package basebackup

import "testing"

func TestPlace(t *testing.T) {
	tests := []struct {
		rel  string
		main bool
		want placement
	}{
		{"PG_VERSION", true, placeChunk},
		{"base/1/1259", true, placeChunk},
		{"global/pg_control", true, placeControl},
		{"backup_label", true, placeControl},
		{"tablespace_map", true, placeControl},
		{"postmaster.pid", true, placeSkip},
		{"postmaster.opts", true, placeSkip},
		{"pg_wal", true, placeChunk},
		{"pg_wal/000000010000000000000001", true, placeSkip},
		{"pg_wal/archive_status", true, placeSkip},
		{"pg_log/postgresql.log", true, placeSkip},
		{"pg_tblspc/16384", true, placeSkip},
		{"pg_replslot/s/state", true, placeSkip},
		{"pg_stat_tmp/global.stat", true, placeSkip},
		{"base/1/pgsql_tmp", true, placeSkip},
		{"base/pgsql_tmp/pgsql_tmp1.0", true, placeSkip},
		{"postgresql.conf~", true, placeSkip},
		{"postgresql.conf.old", true, placeSkip},
		// Every cluster made from a backup (a standby) has one, and
		// BASE_BACKUP's manifest lists it.
		{"backup_label.old", true, placeChunk},
		{"base/backup_label.old", true, placeSkip},
		{"backup_label.old", false, placeSkip},
		{"x.tmp", true, placeSkip},
		{".s.PGSQL.5432", true, placeSkip},
		{"base/1/pg_control", true, placeSkip},
		// In a tablespace, only the any-depth rules apply.
		{"PG_15_202209061/5/16385", false, placeChunk},
		{"backup_label", false, placeChunk},
		{"pg_wal/x", false, placeChunk},
		{"PG_15_202209061/pgsql_tmp/t", false, placeSkip},
		// Only the listed top-level directories lose their contents.
		{"base/pg_wal/x", true, placeChunk},
	}
	for _, tt := range tests {
		if got := place(tt.rel, tt.main); got != tt.want {
			t.Errorf("place(%q, %v) = %d, want %d", tt.rel, tt.main, got, tt.want)
		}
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		name, want string
		ok         bool
	}{
		{"base/1/", "base/1", true},
		{"./PG_VERSION", "PG_VERSION", true},
		{"./", "", true},
		{"a//b", "a/b", true},
		{"/etc/passwd", "", false},
		{"../x", "", false},
		{"a/../../x", "", false},
	}
	for _, tt := range tests {
		got, ok := cleanName(tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("cleanName(%q) = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
