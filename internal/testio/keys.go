package testio

import "testing"

// WithAndWithoutKeys runs f as two subtests, "keys" (keys true: a site
// with encryption keys, where history files and backups are bound to
// their system) and "keyless" (keys false: a site without, where only
// what the metadata claims is looked at), for the rules that hold in
// both kinds of site.
func WithAndWithoutKeys(t *testing.T, f func(t *testing.T, keys bool)) {
	t.Helper()
	for _, keys := range []bool{true, false} {
		name := "keyless"
		if keys {
			name = "keys"
		}
		t.Run(name, func(t *testing.T) { f(t, keys) })
	}
}
