// Package metrics is hoard's metric registry and its two ways out: a
// Registry of counters and gauges with labels, written in the Prometheus
// text exposition format (GET /metrics), and a StatsD client that sends
// the same series over UDP with Telegraf's or Datadog's tag syntax
// (PGHoard's statsd settings).
//
// It is a leaf: it imports no other hoard package, knows no metric of its
// own (the daemon registers them) and never logs. Registering a series is
// idempotent, so a component restarted by a configuration reload keeps
// counting where it was; Remove and RemoveLabeled take away the series
// whose subject is gone (a site a reload removed), which would otherwise
// be exported with their last values for good.
package metrics
