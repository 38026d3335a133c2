package metrics

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// udpSink is a real StatsD-side UDP socket on loopback.
type udpSink struct {
	conn *net.UDPConn
}

func newUDPSink(t testing.TB) *udpSink {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpSink{conn: conn}
}

func (u *udpSink) port() int { return u.conn.LocalAddr().(*net.UDPAddr).Port }

// read returns the datagrams that arrive until none has come for a short
// while; the sender has already written them all to loopback, so the wait
// only bounds a test that would otherwise hang on a missing datagram.
func (u *udpSink) read(t testing.TB) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 65536)
	for {
		if err := u.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		n, err := u.conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(buf[:n]))
	}
}

// lines splits datagrams into sorted lines.
func lines(datagrams []string) []string {
	var out []string
	for _, d := range datagrams {
		out = append(out, strings.Split(d, "\n")...)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func newTestStatsD(t testing.TB, sink *udpSink, format string, tags map[string]string) *StatsD {
	t.Helper()
	s, err := NewStatsD("127.0.0.1", sink.port(), format, tags)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStatsD_Flush(t *testing.T) {
	for _, tc := range []struct {
		format string
		first  []string
		second []string
	}{
		{
			format: "telegraf",
			first: []string{
				"hoard_lag_bytes,env=prod,site=main:0|g",
				"hoard_lag_bytes,env=prod,site=main:-3.5|g",
				"hoard_queue,env=prod,site=overridden:7|g",
				"hoard_upload_bytes_total,env=prod,site=a_b_c_d_e_f,type=xlog:5|c",
			},
			second: []string{
				"hoard_lag_bytes,env=prod,site=main:16777216|g",
				"hoard_queue,env=prod,site=overridden:7|g",
				"hoard_upload_bytes_total,env=prod,site=a_b_c_d_e_f,type=xlog:3|c",
			},
		},
		{
			format: "datadog",
			first: []string{
				"hoard_lag_bytes:0|g|#env:prod,site:main",
				"hoard_lag_bytes:-3.5|g|#env:prod,site:main",
				"hoard_queue:7|g|#env:prod,site:overridden",
				"hoard_upload_bytes_total:5|c|#env:prod,site:a_b=c:d_e_f,type:xlog",
			},
			second: []string{
				"hoard_lag_bytes:16777216|g|#env:prod,site:main",
				"hoard_queue:7|g|#env:prod,site:overridden",
				"hoard_upload_bytes_total:3|c|#env:prod,site:a_b=c:d_e_f,type:xlog",
			},
		},
	} {
		t.Run(tc.format, func(t *testing.T) {
			sink := newUDPSink(t)
			s := newTestStatsD(t, sink, tc.format, map[string]string{"env": "prod", "site": "overridden"})
			m := New(map[string]string{"prometheus_only": "x"})
			up := m.Counter("hoard_upload_bytes_total", "Bytes.", map[string]string{"site": "a,b=c:d|e f", "type": "xlog"})
			lag := m.Gauge("hoard_lag_bytes", "Lag.", map[string]string{"site": "main"})
			m.Gauge("hoard_queue", "Queue.", nil).Set(7)
			m.Counter("hoard_idle_total", "Never incremented.", nil)

			up.Add(5)
			lag.Set(-3.5)
			if err := s.Flush(m); err != nil {
				t.Fatal(err)
			}
			// The negative gauge is a reset and a value in one datagram, in order.
			got := sink.read(t)
			if len(got) != 1 {
				t.Fatalf("got %d datagrams, want 1: %q", len(got), got)
			}
			if !strings.Contains(got[0], strings.Join(tc.first[:2], "\n")) {
				t.Errorf("negative gauge not sent as reset then value:\n%s", got[0])
			}
			if diff := cmp.Diff(sorted(tc.first), lines(got)); diff != "" {
				t.Errorf("first flush (-want +got):\n%s", diff)
			}

			// Counters are deltas since the last flush; gauges are resent.
			up.Add(3)
			lag.Set(16777216)
			if err := s.Flush(m); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(sorted(tc.second), lines(sink.read(t))); diff != "" {
				t.Errorf("second flush (-want +got):\n%s", diff)
			}

			// No increase: no counter line.
			if err := s.Flush(m); err != nil {
				t.Fatal(err)
			}
			for _, l := range lines(sink.read(t)) {
				if strings.Contains(l, "|c") {
					t.Errorf("unchanged counter sent: %s", l)
				}
			}
		})
	}
}

func TestStatsD_FlushSplitsDatagrams(t *testing.T) {
	sink := newUDPSink(t)
	s := newTestStatsD(t, sink, "datadog", map[string]string{"host": "db1"})
	m := New(nil)
	var want []string
	for i := range 300 {
		site := fmt.Sprintf("site-with-a-rather-long-name-%03d", i)
		m.Counter("hoard_wal_segments_stored_total", "Segments.", map[string]string{"site": site}).Add(float64(i + 1))
		want = append(want, fmt.Sprintf("hoard_wal_segments_stored_total:%d|c|#host:db1,site:%s", i+1, site))
	}
	sort.Strings(want)
	if err := s.Flush(m); err != nil {
		t.Fatal(err)
	}
	got := sink.read(t)
	if len(got) < 2 {
		t.Fatalf("%d lines went in %d datagram(s), want several", len(want), len(got))
	}
	for i, d := range got {
		if len(d) > maxDatagram {
			t.Errorf("datagram %d is %d bytes, over %d", i, len(d), maxDatagram)
		}
		if strings.HasPrefix(d, "\n") || strings.HasSuffix(d, "\n") || strings.Contains(d, "\n\n") {
			t.Errorf("datagram %d has an empty line", i)
		}
	}
	if diff := cmp.Diff(want, lines(got)); diff != "" {
		t.Errorf("lines across datagrams (-want +got):\n%s", diff)
	}
}

func TestStatsD_FlushErrSend(t *testing.T) {
	// A closed socket fails every write: nothing counts as sent, so the
	// counter's whole increase goes out on the next successful flush.
	sink := newUDPSink(t)
	s := newTestStatsD(t, sink, "telegraf", nil)
	m := New(nil)
	c := m.Counter("c_total", "C.", nil)
	c.Add(2)
	good := s.conn
	bad, err := net.Dial("udp", good.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	bad.Close()
	s.conn = bad
	if err := s.Flush(m); err == nil {
		t.Fatal("flush on a closed socket succeeded")
	}
	s.conn = good
	c.Add(1)
	if err := s.Flush(m); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"c_total:3|c"}, lines(sink.read(t))); diff != "" {
		t.Errorf("after a failed flush (-want +got):\n%s", diff)
	}
}

func TestNewStatsD_Err(t *testing.T) {
	for _, tc := range []struct {
		name, host, format string
		port               int
	}{
		{"ErrFormat", "127.0.0.1", "graphite", 8125},
		{"ErrPort", "127.0.0.1", "telegraf", 0},
		{"ErrPortRange", "127.0.0.1", "telegraf", 70000},
		{"ErrHost", "no such host.invalid", "telegraf", 8125},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := NewStatsD(tc.host, tc.port, tc.format, nil); err == nil {
				s.Close()
				t.Error("no error")
			}
		})
	}
	t.Run("OKDefaultFormat", func(t *testing.T) {
		s, err := NewStatsD("", 8125, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.format != StatsDTelegraf || s.addr != "127.0.0.1:8125" {
			t.Errorf("format %q addr %q, want telegraf 127.0.0.1:8125", s.format, s.addr)
		}
	})
}
