// Package deploy holds no code: its tests check the deployment examples
// beside them. Every Kubernetes manifest parses; the Kubernetes sidecar is
// configured by environment alone, with variables hoard knows, into a
// valid configuration, and probes /healthz on the port it listens on; the
// image's build script produces a static binary; the Prometheus alerting
// rules pass promtool's checks and their unit tests; the Grafana
// dashboards for Prometheus and for InfluxDB have the same panels, and a
// real InfluxDB answers the InfluxDB dashboard's queries.
package deploy
