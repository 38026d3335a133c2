package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// expoSample is one sample line parsed back from the exposition.
type expoSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// expoFamily is one metric name's HELP, TYPE and samples.
type expoFamily struct {
	Help, Type string
	Samples    []expoSample
}

// parseExposition parses the text format strictly enough to catch any
// formatting mistake: every HELP is followed by TYPE, samples follow their
// TYPE, label values are unescaped, names are valid.
func parseExposition(t testing.TB, text string) (map[string]*expoFamily, []string) {
	t.Helper()
	fams := map[string]*expoFamily{}
	var order []string
	var cur string
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, help, ok := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if !ok || !validMetricName(name) {
				t.Fatalf("line %d: bad HELP line %q", n, line)
			}
			if fams[name] != nil {
				t.Fatalf("line %d: second HELP for %s", n, name)
			}
			fams[name] = &expoFamily{Help: unescape(t, help, false)}
			order = append(order, name)
			cur = name
		case strings.HasPrefix(line, "# TYPE "):
			name, typ, ok := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			if !ok || name != cur || fams[name].Type != "" || (typ != "counter" && typ != "gauge") {
				t.Fatalf("line %d: bad TYPE line %q after HELP of %q", n, line, cur)
			}
			fams[name].Type = typ
		default:
			s := parseSample(t, n, line)
			if s.Name != cur || fams[cur].Type == "" {
				t.Fatalf("line %d: sample %q outside its family %q", n, line, cur)
			}
			fams[cur].Samples = append(fams[cur].Samples, s)
		}
	}
	return fams, order
}

func parseSample(t testing.TB, n int, line string) expoSample {
	t.Helper()
	s := expoSample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		t.Fatalf("line %d: no value in %q", n, line)
	}
	s.Name = line[:i]
	if !validMetricName(s.Name) {
		t.Fatalf("line %d: bad metric name %q", n, s.Name)
	}
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for rest[0] != '}' {
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				t.Fatalf("line %d: bad labels in %q", n, line)
			}
			name := rest[:eq]
			if !validLabelName(name) {
				t.Fatalf("line %d: bad label name %q", n, name)
			}
			rest = rest[eq+2:]
			var val []byte
			for j := 0; ; j++ {
				if j >= len(rest) {
					t.Fatalf("line %d: unterminated label value in %q", n, line)
				}
				if rest[j] == '\\' {
					val = append(val, rest[j:j+2]...)
					j++
					continue
				}
				if rest[j] == '"' {
					rest = rest[j+1:]
					break
				}
				val = append(val, rest[j])
			}
			if _, dup := s.Labels[name]; dup {
				t.Fatalf("line %d: duplicate label %s", n, name)
			}
			s.Labels[name] = unescape(t, string(val), true)
			if rest[0] == ',' {
				rest = rest[1:]
			}
		}
		rest = rest[1:]
	}
	if rest == "" || rest[0] != ' ' {
		t.Fatalf("line %d: no space before value in %q", n, line)
	}
	v, err := strconv.ParseFloat(rest[1:], 64)
	if err != nil {
		t.Fatalf("line %d: value: %v", n, err)
	}
	s.Value = v
	return s
}

func unescape(t testing.TB, s string, quote bool) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' && quote {
			t.Fatalf("unescaped quote in %q", s)
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			t.Fatalf("dangling backslash in %q", s)
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case '"':
			b.WriteByte('"')
		default:
			t.Fatalf("bad escape \\%c in %q", s[i], s)
		}
	}
	return b.String()
}

func exposition(t testing.TB, m *Registry) string {
	t.Helper()
	var buf bytes.Buffer
	if err := m.WritePrometheus(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestRegistry_WritePrometheus(t *testing.T) {
	m := New(map[string]string{"instance": "db1", "bad-tag": "x"})
	m.Gauge("hoard_wal_lag_bytes", "Bytes between the server's flush LSN and the stored LSN.", map[string]string{"site": "main"}).Set(16777216)
	m.Gauge("hoard_wal_lag_bytes", "ignored: help is kept from the first registration", map[string]string{"site": "alpha"}).Set(0.5)
	c := m.Counter("hoard_upload_bytes_total", "Bytes stored.\nSecond line with a \\ backslash.", map[string]string{
		"site": "we\"ird\\site\nname", "type": "xlog",
	})
	c.Add(3)
	c.Add(4)
	m.Counter("hoard_basebackups_total", "Basebackups completed.", nil).Add(1)
	m.Gauge("hoard_nan", "Special values.", map[string]string{"v": "nan"}).Set(math.NaN())
	m.Gauge("hoard_nan", "Special values.", map[string]string{"v": "inf"}).Set(math.Inf(1))
	m.Gauge("hoard_nan", "Special values.", map[string]string{"v": "-inf"}).Set(math.Inf(-1))
	m.Gauge("hoard_nan", "Special values.", map[string]string{"v": "big"}).Set(1e300)
	m.Gauge("hoard_nan", "Special values.", map[string]string{"v": "neg"}).Set(-2.25)
	m.Gauge("hoard_nan", "Special values.", map[string]string{"v": "x", "instance": "override"}).Set(1)

	text := exposition(t, m)
	fams, order := parseExposition(t, text)
	if !sort.StringsAreSorted(order) {
		t.Errorf("families not sorted: %v", order)
	}
	if got, want := order, []string{"hoard_basebackups_total", "hoard_nan", "hoard_upload_bytes_total", "hoard_wal_lag_bytes"}; !cmp.Equal(got, want) {
		t.Errorf("families = %v, want %v", got, want)
	}

	want := map[string]*expoFamily{
		"hoard_basebackups_total": {Help: "Basebackups completed.", Type: "counter", Samples: []expoSample{
			{Name: "hoard_basebackups_total", Labels: map[string]string{"bad_tag": "x", "instance": "db1"}, Value: 1},
		}},
		"hoard_upload_bytes_total": {Help: "Bytes stored.\nSecond line with a \\ backslash.", Type: "counter", Samples: []expoSample{
			{Name: "hoard_upload_bytes_total", Labels: map[string]string{"bad_tag": "x", "instance": "db1", "site": "we\"ird\\site\nname", "type": "xlog"}, Value: 7},
		}},
		"hoard_wal_lag_bytes": {Help: "Bytes between the server's flush LSN and the stored LSN.", Type: "gauge", Samples: []expoSample{
			{Name: "hoard_wal_lag_bytes", Labels: map[string]string{"bad_tag": "x", "instance": "db1", "site": "alpha"}, Value: 0.5},
			{Name: "hoard_wal_lag_bytes", Labels: map[string]string{"bad_tag": "x", "instance": "db1", "site": "main"}, Value: 16777216},
		}},
	}
	nan := fams["hoard_nan"]
	delete(fams, "hoard_nan")
	if diff := cmp.Diff(want, fams); diff != "" {
		t.Errorf("exposition (-want +got):\n%s\n%s", diff, text)
	}

	// Special values, and series labels winning over constant labels.
	got := map[string]string{}
	for _, s := range nan.Samples {
		got[s.Labels["v"]+"/"+s.Labels["instance"]] = strconv.FormatFloat(s.Value, 'g', -1, 64)
	}
	wantNaN := map[string]string{"nan/db1": "NaN", "inf/db1": "+Inf", "-inf/db1": "-Inf", "big/db1": "1e+300", "neg/db1": "-2.25", "x/override": "1"}
	if diff := cmp.Diff(wantNaN, got); diff != "" {
		t.Errorf("special values (-want +got):\n%s", diff)
	}

	// Exact bytes of a few lines: no exponent for whole numbers, labels sorted.
	for _, line := range []string{
		`# HELP hoard_upload_bytes_total Bytes stored.\nSecond line with a \\ backslash.`,
		`# TYPE hoard_upload_bytes_total counter`,
		`hoard_upload_bytes_total{bad_tag="x",instance="db1",site="we\"ird\\site\nname",type="xlog"} 7`,
		`hoard_wal_lag_bytes{bad_tag="x",instance="db1",site="main"} 16777216`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("exposition lacks line %s\n%s", line, text)
		}
	}
}

func TestRegistry_WritePrometheusEmpty(t *testing.T) {
	if got := exposition(t, New(nil)); got != "" {
		t.Errorf("empty registry wrote %q", got)
	}
	m := New(nil)
	m.Counter("a_total", "A.", nil)
	if got, want := exposition(t, m), "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRegistry_SameSeries(t *testing.T) {
	m := New(nil)
	a := m.Counter("x_total", "X.", map[string]string{"site": "a", "type": "xlog"})
	b := m.Counter("x_total", "X.", map[string]string{"type": "xlog", "site": "a"})
	if a != b {
		t.Error("same name and labels returned different series")
	}
	if m.Counter("x_total", "X.", map[string]string{"site": "b", "type": "xlog"}) == a {
		t.Error("different labels returned the same series")
	}
	g1 := m.Gauge("g", "G.", nil)
	g1.Set(5)
	g1.Add(-7)
	if got := m.Gauge("g", "G.", map[string]string{}).Value(); got != -2 {
		t.Errorf("gauge = %v, want -2", got)
	}
}

func TestCounter_Monotonic(t *testing.T) {
	m := New(nil)
	c := m.Counter("c_total", "C.", nil)
	c.Add(2)
	c.Add(-1)
	c.Add(math.NaN())
	c.Add(0)
	if got := c.Value(); got != 2 {
		t.Errorf("counter = %v after negative/NaN adds, want 2", got)
	}

	// Concurrent adds lose nothing, and every scrape sees a value no smaller
	// than the previous one.
	const workers, adds = 4, 2000
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		last := 0.0
		for {
			select {
			case <-done:
				return
			default:
			}
			var buf bytes.Buffer
			if err := m.WritePrometheus(&buf); err != nil {
				errc <- err
				return
			}
			_, after, _ := strings.Cut(buf.String(), "\nc_total ")
			v, err := strconv.ParseFloat(strings.TrimSpace(after), 64)
			if err != nil {
				errc <- err
				return
			}
			if v < last {
				errc <- fmt.Errorf("counter went down from %v to %v", last, v)
				return
			}
			last = v
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range adds {
				c.Add(1)
			}
		}()
	}
	wg.Wait()
	close(done)
	if err := <-errc; err != nil {
		t.Error(err)
	}
	if got, want := c.Value(), float64(2+workers*adds); got != want {
		t.Errorf("counter = %v, want %v", got, want)
	}
}

func TestRegistry_Panics(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(m *Registry)
	}{
		{"ErrMetricName", func(m *Registry) { m.Counter("hoard.upload", "", nil) }},
		{"ErrMetricNameDigit", func(m *Registry) { m.Gauge("1x", "", nil) }},
		{"ErrLabelName", func(m *Registry) { m.Gauge("x", "", map[string]string{"a-b": "v"}) }},
		{"ErrReservedLabel", func(m *Registry) { m.Gauge("x", "", map[string]string{"__name__": "v"}) }},
		{"ErrKind", func(m *Registry) { m.Counter("x", "", nil); m.Gauge("x", "", nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tc.f(New(nil))
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRegistry_WritePrometheusErrWrite(t *testing.T) {
	m := New(nil)
	m.Gauge("g", "G.", nil)
	if err := m.WritePrometheus(failWriter{}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("err = %v, want the writer's error", err)
	}
}

func TestSanitizeLabelName(t *testing.T) {
	for in, want := range map[string]string{"ok": "ok", "a-b.c": "a_b_c", "1x": "_x", "": "_", "__x": "x_x", "ü": "x_"} {
		if got := sanitizeLabelName(in); got != want {
			t.Errorf("sanitizeLabelName(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkRegistry_WritePrometheus(b *testing.B) {
	m := New(map[string]string{"instance": "db1"})
	for i := range 1000 {
		labels := map[string]string{"site": fmt.Sprintf("site%02d", i%20), "type": []string{"xlog", "timeline", "basebackup"}[i%3], "n": strconv.Itoa(i)}
		if i%2 == 0 {
			m.Counter(fmt.Sprintf("hoard_metric_%d_total", i%25), "A counter.", labels).Add(float64(i) * 1024)
		} else {
			m.Gauge(fmt.Sprintf("hoard_gauge_%d", i%25), "A gauge.", labels).Set(float64(i) / 3)
		}
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := m.WritePrometheus(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

// TestRegistry_Remove: a removed series is no longer exported (nor sent
// to StatsD), a family left empty goes with its HELP and TYPE, the
// other series stay, and registering the series again starts it at 0.
func TestRegistry_Remove(t *testing.T) {
	m := New(nil)
	site := func(s string) map[string]string { return map[string]string{"site": s} }
	m.Gauge("hoard_wal_connected", "Connected.", site("a")).Set(1)
	m.Gauge("hoard_wal_connected", "Connected.", site("b")).Set(1)
	m.Gauge("hoard_wal_paused", "Paused.", site("a")).Set(1)
	m.Counter("hoard_backups_total", "Backups.", map[string]string{"site": "a", "result": "success"}).Add(3)
	m.Counter("hoard_backups_total", "Backups.", map[string]string{"site": "b", "result": "success"}).Add(2)
	old := m.Gauge("hoard_wal_connected", "Connected.", site("a"))

	m.Remove("hoard_wal_connected", site("a"))
	m.Remove("hoard_wal_connected", site("nope")) // absent: nothing
	m.Remove("hoard_nope", site("a"))
	old.Set(5) // a handle kept by a stopped owner exports nothing
	var b strings.Builder
	if err := m.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP hoard_backups_total Backups.
# TYPE hoard_backups_total counter
hoard_backups_total{result="success",site="a"} 3
hoard_backups_total{result="success",site="b"} 2
# HELP hoard_wal_connected Connected.
# TYPE hoard_wal_connected gauge
hoard_wal_connected{site="b"} 1
# HELP hoard_wal_paused Paused.
# TYPE hoard_wal_paused gauge
hoard_wal_paused{site="a"} 1
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("after Remove (-want +got):\n%s", diff)
	}

	m.RemoveLabeled("site", "a")
	b.Reset()
	if err := m.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	want = `# HELP hoard_backups_total Backups.
# TYPE hoard_backups_total counter
hoard_backups_total{result="success",site="b"} 2
# HELP hoard_wal_connected Connected.
# TYPE hoard_wal_connected gauge
hoard_wal_connected{site="b"} 1
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("after RemoveLabeled (-want +got):\n%s", diff)
	}
	for _, s := range m.snapshot() {
		if s.series.key == `site="a"` || strings.Contains(s.series.key, `site="a"`) {
			t.Errorf("removed series %s%s still in the StatsD snapshot", s.name, s.series.key)
		}
	}
	if g := m.Gauge("hoard_wal_connected", "Connected.", site("a")); g.Value() != 0 || g == old {
		t.Errorf("registered again: value %v (same handle %v), want a new series at 0", g.Value(), g == old)
	}
}
