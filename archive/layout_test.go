package archive

import "testing"

func TestLayout_Keys(t *testing.T) {
	l := Layout{Prefix: "site1"}
	tests := []struct{ got, want string }{
		{l.WALKey("000000010000000000000003"), "site1/xlog/000000010000000000000003"},
		{l.WALKey("00000002.history"), "site1/timeline/00000002.history"},
		{l.WALKey("000000010000000000000003.partial"), "site1/xlog/000000010000000000000003.partial"},
		{l.BackupKey("2024-01-01_10-00_0"), "site1/basebackup/2024-01-01_10-00_0.00000000.pghoard"},
		{l.BackupKey("2024-01-01_10-00_0.00000000.pghoard"), "site1/basebackup/2024-01-01_10-00_0.00000000.pghoard"},
		{ChunkFilename("2024-01-01_10-00_0", 3), "2024-01-01_10-00_0/2024-01-01_10-00_0.00000003.pghoard"},
		{l.ChunkKey(ChunkFilename("2024-01-01_10-00_0", 1)), "site1/basebackup_chunk/2024-01-01_10-00_0/2024-01-01_10-00_0.00000001.pghoard"},
		{l.Dir(BasebackupDir), "site1/basebackup/"},
		{Layout{}.WALKey("00000002.history"), "timeline/00000002.history"},
		{BackupName("site1/basebackup/2024-01-01_10-00_0.00000000.pghoard"), "2024-01-01_10-00_0"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
