package command

import "fmt"

// plural writes a count with its noun, one or many as n is 1 or not:
// "1 chunk", "0 chunks", "3 chunks". For text people read; machine-readable
// output (--json, metrics, log fields) keeps its own names.
func plural[N ~int | ~int64 | ~uint64](n N, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
