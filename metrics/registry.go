package metrics

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry is a small registry of counters and gauges, exposed in the
// Prometheus text format by WritePrometheus and sent to StatsD by
// StatsD.Flush. It does what hoard's daemon needs and nothing more, so hoard
// carries no Prometheus client library. All methods are safe for concurrent
// use; updating a series is one atomic operation.
type Registry struct {
	constLabels []labelPair // sorted by name; added to every series on /metrics

	mu       sync.RWMutex
	families map[string]*family
	sorted   []*family // by name, kept sorted on insert so exposition is linear
}

// kind is the type of a metric family.
type kind int

const (
	kindCounter kind = iota
	kindGauge
)

// String returns the Prometheus TYPE keyword.
func (k kind) String() string {
	if k == kindCounter {
		return "counter"
	}
	return "gauge"
}

// family is all series of one metric name.
type family struct {
	name   string
	help   string
	kind   kind
	series map[string]*series // by labelKey
	sorted []*series          // by labelKey
}

// series is one time series: a name, a label set and an atomic float.
type series struct {
	labels   []labelPair // the series' own labels, sorted by name (no const labels)
	key      string      // canonical form of labels, the registry key
	rendered string      // `{a="x",b="y"}` including const labels, or ""
	bits     atomic.Uint64
}

// labelPair is one label.
type labelPair struct{ name, value string }

// Counter is a cumulative value that only goes up, such as bytes uploaded.
type Counter series

// Gauge is a value that goes up and down, such as a queue depth or an age.
type Gauge series

// NewMetrics returns an empty registry. constLabels (PGHoard's
// prometheus.tags) are added to every series in the Prometheus exposition;
// a series label of the same name wins. Characters not allowed in a label
// name are replaced by "_", since the labels come from the user's config.
func New(constLabels map[string]string) *Registry {
	m := &Registry{families: make(map[string]*family)}
	for name, value := range constLabels {
		m.constLabels = append(m.constLabels, labelPair{sanitizeLabelName(name), value})
	}
	sort.Slice(m.constLabels, func(i, j int) bool { return m.constLabels[i].name < m.constLabels[j].name })
	return m
}

// Counter returns the counter series name{labels}, creating it at zero on
// first use; later calls with the same name and labels return the same
// series. help is used on first registration. It panics when name or a label
// name is not a valid Prometheus name, or when name is already a gauge: both
// are programming errors.
func (m *Registry) Counter(name, help string, labels map[string]string) *Counter {
	return (*Counter)(m.series(name, help, kindCounter, labels))
}

// Gauge returns the gauge series name{labels}, creating it at zero on first
// use; later calls with the same name and labels return the same series. It
// panics like Counter.
func (m *Registry) Gauge(name, help string, labels map[string]string) *Gauge {
	return (*Gauge)(m.series(name, help, kindGauge, labels))
}

// Add adds v to the counter. A negative or NaN v is ignored, so the counter
// never goes down: Prometheus' rate() would read a decrease as a restart.
func (c *Counter) Add(v float64) {
	if !(v > 0) {
		return
	}
	(*series)(c).add(v)
}

// Value returns the counter's current value.
func (c *Counter) Value() float64 { return (*series)(c).value() }

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds v (which may be negative) to the gauge.
func (g *Gauge) Add(v float64) { (*series)(g).add(v) }

// Value returns the gauge's current value.
func (g *Gauge) Value() float64 { return (*series)(g).value() }

func (s *series) value() float64 { return math.Float64frombits(s.bits.Load()) }

func (s *series) add(v float64) {
	for {
		old := s.bits.Load()
		next := math.Float64bits(math.Float64frombits(old) + v)
		if s.bits.CompareAndSwap(old, next) {
			return
		}
	}
}

// series finds or creates a series. The read-locked fast path serves the
// common case of a component fetching a series it registered before.
func (m *Registry) series(name, help string, k kind, labels map[string]string) *series {
	if !validMetricName(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	pairs := make([]labelPair, 0, len(labels))
	for n, v := range labels {
		if !validLabelName(n) {
			panic(fmt.Sprintf("metrics: metric %s: invalid label name %q", name, n))
		}
		pairs = append(pairs, labelPair{n, v})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].name < pairs[j].name })
	key := string(appendLabels(nil, pairs))

	m.mu.RLock()
	f := m.families[name]
	var s *series
	if f != nil && f.kind == k {
		s = f.series[key]
	}
	m.mu.RUnlock()
	if s != nil {
		return s
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	f = m.families[name]
	if f == nil {
		f = &family{name: name, help: help, kind: k, series: make(map[string]*series)}
		m.families[name] = f
		i := sort.Search(len(m.sorted), func(i int) bool { return m.sorted[i].name >= name })
		m.sorted = append(m.sorted, nil)
		copy(m.sorted[i+1:], m.sorted[i:])
		m.sorted[i] = f
	}
	if f.kind != k {
		panic(fmt.Sprintf("metrics: metric %s is a %s, not a %s", name, f.kind, k))
	}
	if s = f.series[key]; s != nil {
		return s
	}
	s = &series{labels: pairs, key: key, rendered: m.render(pairs)}
	f.series[key] = s
	i := sort.Search(len(f.sorted), func(i int) bool { return f.sorted[i].key >= key })
	f.sorted = append(f.sorted, nil)
	copy(f.sorted[i+1:], f.sorted[i:])
	f.sorted[i] = s
	return s
}

// Remove stops exporting the series name{labels} (to /metrics and to
// StatsD), when it is registered: for a series whose subject is gone,
// such as the WAL receiver of a site a reload stopped streaming, whose
// last value would otherwise be exported for good. A family left with no
// series goes too. A handle to the series obtained before still works
// but is exported no more; a later Counter or Gauge call registers the
// series again, at zero.
func (m *Registry) Remove(name string, labels map[string]string) {
	pairs := make([]labelPair, 0, len(labels))
	for n, v := range labels {
		pairs = append(pairs, labelPair{n, v})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].name < pairs[j].name })
	key := string(appendLabels(nil, pairs))
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.families[name]; f != nil {
		m.removeLocked(f, func(s *series) bool { return s.key == key })
	}
}

// RemoveLabeled stops exporting, as Remove does, every series that has
// the label name with value (a site's series, for a site a reload
// removed).
func (m *Registry) RemoveLabeled(name, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range slices.Clone(m.sorted) {
		m.removeLocked(f, func(s *series) bool {
			for _, p := range s.labels {
				if p.name == name {
					return p.value == value
				}
			}
			return false
		})
	}
}

// removeLocked removes f's series for which drop is true, and f when it
// is left empty. Caller holds m.mu for writing.
func (m *Registry) removeLocked(f *family, drop func(*series) bool) {
	kept := f.sorted[:0]
	for _, s := range f.sorted {
		if drop(s) {
			delete(f.series, s.key)
			continue
		}
		kept = append(kept, s)
	}
	clear(f.sorted[len(kept):])
	f.sorted = kept
	if len(f.sorted) > 0 {
		return
	}
	delete(m.families, f.name)
	for i, g := range m.sorted {
		if g == f {
			m.sorted = append(m.sorted[:i], m.sorted[i+1:]...)
			break
		}
	}
}

// render returns the exposition label block of a series: its own labels
// merged over the constant labels, sorted by name.
func (m *Registry) render(own []labelPair) string {
	all := make([]labelPair, 0, len(own)+len(m.constLabels))
	all = append(all, own...)
	for _, c := range m.constLabels {
		if !hasLabel(own, c.name) {
			all = append(all, c)
		}
	}
	if len(all) == 0 {
		return ""
	}
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	b := append([]byte{'{'}, appendLabels(nil, all)...)
	return string(append(b, '}'))
}

func hasLabel(pairs []labelPair, name string) bool {
	for _, p := range pairs {
		if p.name == name {
			return true
		}
	}
	return false
}

// appendLabels appends `a="x",b="y"` with values escaped as the text format
// requires (backslash, double quote and line feed).
func appendLabels(b []byte, pairs []labelPair) []byte {
	for i, p := range pairs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.name...)
		b = append(b, '=', '"')
		b = appendEscaped(b, p.value, true)
		b = append(b, '"')
	}
	return b
}

// appendEscaped escapes backslash and line feed, and also the double quote
// when quote is set (label values; HELP text leaves quotes alone).
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendValue formats a sample value. Whole numbers below 2^53 are written
// without an exponent so byte counts and LSNs read naturally; Go's float
// syntax, which the text format uses, accepts both forms.
func appendValue(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.AppendFloat(b, v, 'f', -1, 64)
	default:
		return strconv.AppendFloat(b, v, 'g', -1, 64)
	}
}

// WritePrometheus writes every series in the Prometheus text exposition
// format 0.0.4: per metric name, sorted, a HELP line, a TYPE line and one
// sample line per label set, sorted by labels. Only w's errors are returned.
func (m *Registry) WritePrometheus(w io.Writer) error {
	const chunk = 32 << 10
	b := make([]byte, 0, chunk+1024)
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, f := range m.sorted {
		b = append(b, "# HELP "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = appendEscaped(b, f.help, false)
		b = append(b, "\n# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.kind.String()...)
		b = append(b, '\n')
		for _, s := range f.sorted {
			b = append(b, f.name...)
			b = append(b, s.rendered...)
			b = append(b, ' ')
			b = appendValue(b, s.value())
			b = append(b, '\n')
			if len(b) >= chunk {
				if _, err := w.Write(b); err != nil {
					return fmt.Errorf("write metrics: %w", err)
				}
				b = b[:0]
			}
		}
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

// sample is one series' value at a moment, as StatsD.Flush sees it.
type sample struct {
	name   string
	kind   kind
	series *series
	value  float64
}

// snapshot returns every series' current value, by name and labels.
func (m *Registry) snapshot() []sample {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []sample
	for _, f := range m.sorted {
		for _, s := range f.sorted {
			out = append(out, sample{name: f.name, kind: f.kind, series: s, value: s.value()})
		}
	}
	return out
}

// validMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == ':' || isLetter(c) || (i > 0 && isDigit(c))) {
			return false
		}
	}
	return true
}

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* and does
// not start with "__", which Prometheus reserves.
func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || isLetter(c) || (i > 0 && isDigit(c))) {
			return false
		}
	}
	return true
}

// sanitizeLabelName turns a user-supplied tag name into a valid label name.
func sanitizeLabelName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '_' || isLetter(c) || (i > 0 && isDigit(c))) {
			b[i] = '_'
		}
	}
	out := string(b)
	if out == "" {
		return "_"
	}
	if strings.HasPrefix(out, "__") {
		out = "x" + out[1:]
	}
	return out
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
