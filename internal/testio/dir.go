package testio

import (
	"os"
	"testing"
)

// DirNames lists the names in dir, sorted (as os.ReadDir gives them),
// failing the test when dir cannot be read: what a test compares with
// the files a store, a fetch or a spool should have left there.
func DirNames(tb testing.TB, dir string) []string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
