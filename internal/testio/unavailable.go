package testio

import (
	"fmt"
	"os"
	"testing"
)

// Strict reports whether HOARD_TEST_STRICT=1 is set: then a missing
// binary or server fails the test instead of skipping it.
func Strict() bool { return os.Getenv("HOARD_TEST_STRICT") == "1" }

// Unavailable skips the test because something it needs is missing, or
// fails it when Strict is set.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatalf("%s (HOARD_TEST_STRICT=1)", msg)
	}
	t.Skip(msg)
}
