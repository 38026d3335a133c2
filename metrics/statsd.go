package metrics

import (
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// StatsD formats, as PGHoard's statsd.format key names them.
const (
	StatsDTelegraf = "telegraf" // name,tag=v:value|g (the default)
	StatsDDatadog  = "datadog"  // name:value|g|#tag:v
)

// maxDatagram is the largest StatsD payload sent in one UDP datagram: it
// fits a 1500-byte Ethernet MTU after IPv6 and UDP headers, so no datagram
// is fragmented (the limit DogStatsD clients use).
const maxDatagram = 1432

// StatsD sends a Registry to a StatsD server over UDP, with tags in
// Telegraf's or Datadog's syntax. Counters are sent as the increase since the
// previous Flush (|c), gauges as their current value (|g). Metric names are
// sent as registered; the tags are the series' labels merged over the tags
// given to NewStatsD (the registry's constant labels are for Prometheus
// only). It is safe for concurrent use.
type StatsD struct {
	addr   string
	format string
	tags   []labelPair // sorted by name

	mu   sync.Mutex // serialises Flush, guards sent and conn writes
	conn net.Conn
	sent map[*series]float64 // counter value as of the last datagram sent
}

// NewStatsD returns a StatsD client for host:port. format is "telegraf" (also
// for "") or "datadog"; tags are added to every metric. The socket is
// connected UDP, so nothing is sent until Flush.
func NewStatsD(host string, port int, format string, tags map[string]string) (*StatsD, error) {
	switch format {
	case "":
		format = StatsDTelegraf
	case StatsDTelegraf, StatsDDatadog:
	default:
		return nil, fmt.Errorf("statsd format %q: use telegraf or datadog", format)
	}
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("statsd port %d: out of range 1-65535", port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("statsd %s: %w", addr, err)
	}
	s := &StatsD{addr: addr, format: format, conn: conn, sent: make(map[*series]float64)}
	for name, value := range tags {
		s.tags = append(s.tags, labelPair{name, value})
	}
	sort.Slice(s.tags, func(i, j int) bool { return s.tags[i].name < s.tags[j].name })
	return s, nil
}

// Close closes the UDP socket.
func (s *StatsD) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.Close()
}

// Flush sends every series of m: counters that went up since the last Flush
// as their increase, every gauge as its value (NaN and infinite gauges are
// skipped: StatsD has no syntax for them). Lines are packed into datagrams of
// at most 1432 bytes; a single line longer than that goes alone. A counter's
// increase counts as sent only once its datagram was written, so after an
// error the next Flush sends it again. The first write error is returned.
func (s *StatsD) Flush(m *Registry) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	var (
		buf      []byte
		pending  []sample // counters in buf, committed to sent once buf is written
		firstErr error
		line     []byte
	)
	send := func() {
		if len(buf) == 0 {
			return
		}
		if _, err := s.conn.Write(buf); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("send statsd datagram to %s: %w", s.addr, err)
			}
		} else {
			for _, p := range pending {
				s.sent[p.series] = p.value
			}
		}
		buf, pending = buf[:0], pending[:0]
	}

	for _, sm := range m.snapshot() {
		line = line[:0]
		switch sm.kind {
		case kindCounter:
			delta := sm.value - s.sent[sm.series]
			if !(delta > 0) || math.IsInf(delta, 0) {
				continue
			}
			line = s.appendLine(line, sm, delta, "c")
		case kindGauge:
			if math.IsNaN(sm.value) || math.IsInf(sm.value, 0) {
				continue
			}
			if sm.value < 0 {
				// A leading sign makes StatsD add to the gauge instead of
				// setting it, so a negative value is sent as a reset to 0
				// followed by the change, in the same datagram.
				line = s.appendLine(line, sm, 0, "g")
				line = append(line, '\n')
			}
			line = s.appendLine(line, sm, sm.value, "g")
		}
		if len(buf) > 0 && len(buf)+1+len(line) > maxDatagram {
			send()
		}
		if len(buf) > 0 {
			buf = append(buf, '\n')
		}
		buf = append(buf, line...)
		if sm.kind == kindCounter {
			pending = append(pending, sm)
		}
	}
	send()
	return firstErr
}

// appendLine appends one metric line in s's format.
func (s *StatsD) appendLine(b []byte, sm sample, v float64, typ string) []byte {
	tags := mergeTags(s.tags, sm.series.labels)
	b = append(b, sm.name...)
	if s.format == StatsDTelegraf {
		// Telegraf: user.logins,service=payroll,region=us-west:1|c
		for _, t := range tags {
			b = append(b, ',')
			b = appendTagText(b, t.name, ",=:| \n")
			b = append(b, '=')
			b = appendTagText(b, t.value, ",=:| \n")
		}
	}
	b = append(b, ':')
	b = appendValue(b, v)
	b = append(b, '|')
	b = append(b, typ...)
	if s.format == StatsDDatadog && len(tags) > 0 {
		// DogStatsD: user.logins:1|c|#service:payroll,region:us-west
		b = append(b, "|#"...)
		for i, t := range tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendTagText(b, t.name, ",:|# \n")
			b = append(b, ':')
			b = appendTagText(b, t.value, ",|# \n")
		}
	}
	return b
}

// mergeTags returns global and own merged by name, own winning, sorted.
func mergeTags(global, own []labelPair) []labelPair {
	if len(global) == 0 {
		return own
	}
	out := make([]labelPair, 0, len(global)+len(own))
	out = append(out, own...)
	for _, g := range global {
		if !hasLabel(own, g.name) {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// appendTagText appends s with every byte of reserved replaced by "_": the
// StatsD line formats have no escaping, so a separator inside a tag would
// change the metric's meaning.
func appendTagText(b []byte, s, reserved string) []byte {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(reserved, s[i]) >= 0 {
			b = append(b, '_')
		} else {
			b = append(b, s[i])
		}
	}
	return b
}
