package command

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Names and values that hoard prints come, many of them, from the storage:
// backup names are object keys, times and hosts are metadata, errors quote
// both. Someone who can write the bucket chooses them, and a terminal acts
// on what it is sent: a newline ends the line and starts a forged one
// ("backup OK"), an ANSI escape erases a line or retitles the window, a
// bidi override reorders what is read. So every string argument of the
// commands' text output (printf) and the error main prints
// (ErrorMessage) go through printable. JSON output (--json, the daemon's
// HTTP API) is escaped by encoding/json, and the log by zerolog, which
// quotes a field value holding any of them.

// printable returns s with every rune a terminal could act on written as
// a Go escape (\n, \t, \x1b, \u202e, and \xff for a byte that is not
// UTF-8): control characters, Unicode format characters (bidi overrides,
// zero-width ones) and invalid UTF-8. Other runes, letters of any script
// included, are kept.
func printable(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case escapeRune(r):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// needsEscape reports whether printable would change s.
func needsEscape(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || escapeRune(r) {
			return true
		}
	}
	return false
}

// escapeRune reports whether r is a control or format character.
func escapeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// printableArgs returns args with each string, error, fmt.Stringer and
// []string made printable; other values (numbers, times) print as they
// are.
func printableArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = printable(v)
		case error:
			out[i] = printable(v.Error())
		case fmt.Stringer:
			out[i] = printable(v.String())
		case []string:
			p := make([]string, len(v))
			for j, s := range v {
				p[j] = printable(s)
			}
			out[i] = p
		default:
			out[i] = a
		}
	}
	return out
}

// printf prints the commands' text output: format is hoard's own, and
// every string argument is made printable. Write errors are not worth
// failing a command over (a closed terminal).
func printf(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, format, printableArgs(args)...)
}

// printRaw prints text hoard made itself, whole (a shell completion
// script, a JSON snippet): newlines and all.
func printRaw(w io.Writer, s string) {
	_, _ = io.WriteString(w, s)
}
