package replication

import (
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
	}{
		{"16MB", 16 << 20},
		{"1MB", 1 << 20},
		{"1GB", 1 << 30},
		{"64kB", 64 << 10},
		{"8192", 8192},
		{"8192B", 8192},
		{"2TB", 2 << 40},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseSize_Err(t *testing.T) {
	for _, in := range []string{"", "MB", "16 XB", "-1MB", "99999999999999TB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"1min", time.Minute},
		{"2s", 2 * time.Second},
		{"500ms", 500 * time.Millisecond},
		{"0", 0},
		{"1500", 1500 * time.Millisecond},
		{"3h", 3 * time.Hour},
		{"1d", 24 * time.Hour},
		{"250us", 250 * time.Microsecond},
	} {
		got, err := ParseDuration(tt.in, time.Millisecond)
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "s", "2 weeks", "-1s", "9999999999999999d"} {
		if got, err := ParseDuration(in, time.Millisecond); err == nil {
			t.Errorf("ParseDuration(%q) = %s, want an error", in, got)
		}
	}
}

func TestConn_IdentifySystem(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major})
		conn := connect(t, c)
		sys, err := conn.IdentifySystem(testContext(t))
		if err != nil {
			t.Fatalf("IdentifySystem: %v", err)
		}
		if want := c.QueryString(t, "select system_identifier::text from pg_control_system()"); sys.SystemID != want {
			t.Errorf("SystemID = %s, want %s", sys.SystemID, want)
		}
		if sys.Timeline != 1 || sys.XLogPos == 0 || sys.DBName != "" {
			t.Errorf("IdentifySystem = %+v", sys)
		}
		v, err := conn.Show(testContext(t), "server_version_num")
		if err != nil || !strings.HasPrefix(v, itoa(major)) {
			t.Errorf("Show(server_version_num) = %q, %v", v, err)
		}
		if _, err := conn.Show(testContext(t), "x; drop"); err == nil {
			t.Error("Show accepted an invalid name")
		}
	})
}

func TestConn_WALSegmentSize(t *testing.T) {
	versions := pgtest.Versions()
	tests := []struct {
		name  string
		major int
		mb    int
	}{
		{"Default", versions[0], 0},
		{"1MB", versions[0], 1},
		{"64MB", versions[len(versions)-1], 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := pgtest.Start(t, pgtest.Options{Major: tt.major, WALSegmentSizeMB: tt.mb})
			conn := connect(t, c)
			got, err := conn.WALSegmentSize(testContext(t))
			want := uint64(16 << 20)
			if tt.mb != 0 {
				want = uint64(tt.mb) << 20
			}
			if err != nil || got != want {
				t.Errorf("WALSegmentSize() = %d, %v; want %d", got, err, want)
			}
		})
	}
}

func TestConn_TimelineHistory(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := promoted(t, major)
		conn := connect(t, c)
		name, content, err := conn.TimelineHistory(testContext(t), 2)
		if err != nil {
			t.Fatalf("TimelineHistory: %v", err)
		}
		if name != "00000002.history" || !strings.HasPrefix(string(content), "1\t") {
			t.Errorf("TimelineHistory(2) = %s %q", name, content)
		}
		if _, _, err := conn.TimelineHistory(testContext(t), 7); err == nil {
			t.Error("TimelineHistory(7) of a server on timeline 2: nil error")
		}
	})
}
