// Package deploy holds no code: its tests check the deployment examples
// beside them. Every YAML file parses; the Kubernetes sidecar is
// configured by environment alone, with variables hoard knows, into a
// valid configuration, and probes /healthz on the port it listens on; the
// image's build script produces a static binary.
package deploy
