package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestNode_ConnString(t *testing.T) {
	for _, tc := range []struct {
		name     string
		node     string // JSON of one node
		want     string
		redacted string
		slot     string
		// what pgconn.ParseConfig must see
		host, user, password, database string
		port                           uint16
	}{
		{
			name: "KeywordObject", node: `{"host": "db1", "port": 5433, "user": "rep", "password": "pw", "dbname": "postgres", "sslmode": "disable"}`,
			want:     "dbname=postgres host=db1 password=pw port=5433 sslmode=disable user=rep",
			redacted: "dbname=postgres host=db1 password=xxxxx port=5433 sslmode=disable user=rep",
			host:     "db1", user: "rep", password: "pw", database: "postgres", port: 5433,
		},
		{
			name: "KeywordObjectQuoting", node: `{"host": "db1", "user": "rep", "password": "it's a \\ pw", "sslmode": "disable", "slot": "s1"}`,
			want:     `host=db1 password='it\'s a \\ pw' sslmode=disable user=rep`,
			redacted: "host=db1 password=xxxxx sslmode=disable user=rep",
			slot:     "s1", host: "db1", user: "rep", password: `it's a \ pw`, port: 5432,
		},
		{
			name: "KeywordObjectEmptyValue", node: `{"host": "db1", "user": "rep", "password": "", "sslmode": "disable"}`,
			want:     "host=db1 password='' sslmode=disable user=rep",
			redacted: "host=db1 password=xxxxx sslmode=disable user=rep",
			host:     "db1", user: "rep", port: 5432,
		},
		{
			name: "KeywordObjectSSLPassword", node: `{"host": "db1", "user": "rep", "sslkey": "/k.pem", "sslpassword": "keypw", "sslmode": "disable"}`,
			want:     "host=db1 sslkey=/k.pem sslmode=disable sslpassword=keypw user=rep",
			redacted: "host=db1 sslkey=/k.pem sslmode=disable sslpassword=xxxxx user=rep",
			host:     "db1", user: "rep", port: 5432,
		},
		{
			name: "ConnString", node: `"host=db2 port=5434 user=rep password='p w' sslmode=disable"`,
			want:     "host=db2 port=5434 user=rep password='p w' sslmode=disable",
			redacted: "host=db2 password=xxxxx port=5434 sslmode=disable user=rep",
			host:     "db2", user: "rep", password: "p w", port: 5434,
		},
		{
			name: "URI", node: `"postgres://rep:s%40cret@db3:5435/app?sslmode=disable"`,
			want:     "postgres://rep:s%40cret@db3:5435/app?sslmode=disable",
			redacted: "postgres://rep:xxxxx@db3:5435/app?sslmode=disable",
			host:     "db3", user: "rep", password: "s@cret", database: "app", port: 5435,
		},
		{
			name: "URIPasswordParam", node: `"postgresql://db3/app?password=pw&sslmode=disable&user=rep"`,
			want:     "postgresql://db3/app?password=pw&sslmode=disable&user=rep",
			redacted: "postgresql://db3/app?password=xxxxx&sslmode=disable&user=rep",
			host:     "db3", user: "rep", password: "pw", database: "app", port: 5432,
		},
		{
			name: "ConnectionStringObject", node: `{"connection_string": "host=db4 user=rep sslmode=disable", "slot": "pghoard"}`,
			want:     "host=db4 user=rep sslmode=disable",
			redacted: "host=db4 sslmode=disable user=rep",
			slot:     "pghoard", host: "db4", user: "rep", port: 5432,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("n.json", []byte(siteJSON(`"nodes": [`+tc.node+`]`)), nil)
			if err != nil {
				t.Fatal(err)
			}
			n := c.BackupSites["s1"].Nodes[0]
			if got := n.ConnString(); got != tc.want {
				t.Errorf("ConnString = %q, want %q", got, tc.want)
			}
			if got := n.Redacted(); got != tc.redacted {
				t.Errorf("Redacted = %q, want %q", got, tc.redacted)
			}
			if strings.Contains(n.String(), "pw") || strings.Contains(n.String(), "cret") {
				t.Errorf("String leaks the password: %s", n)
			}
			if n.Slot != tc.slot {
				t.Errorf("Slot = %q, want %q", n.Slot, tc.slot)
			}
			pc, err := pgconn.ParseConfig(n.ConnString())
			if err != nil {
				t.Fatalf("pgconn.ParseConfig: %v", err)
			}
			got := []any{pc.Host, pc.Port, pc.User, pc.Password}
			want := []any{tc.host, tc.port, tc.user, tc.password}
			if tc.database != "" {
				got, want = append(got, pc.Database), append(want, tc.database)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("pgconn saw (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNode_Redacted(t *testing.T) {
	t.Run("Empty", func(t *testing.T) {
		if got := (Node{}).Redacted(); got != "" {
			t.Errorf("Redacted = %q", got)
		}
	})
	t.Run("ErrUnparsable", func(t *testing.T) {
		got := Node{ConnStr: "host=x password='unterminated"}.Redacted()
		if strings.Contains(got, "unterminated") {
			t.Errorf("Redacted leaks: %q", got)
		}
	})
}
