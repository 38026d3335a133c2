package restore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxConfDepth is how deep include directives nest before PostgreSQL
// gives up (guc-file.l: "could not open configuration file ...: maximum
// nesting depth exceeded", past 10).
const maxConfDepth = 10

// maxConfFile bounds each configuration file ServerSettings reads: a
// restored directory holds what its backup held, and an include may name
// any file.
const maxConfFile = 16 << 20

// ServerSettings returns the settings PostgreSQL would start the data
// directory dir with, from its configuration files alone (no command
// line): postgresql.conf, with the files its include, include_if_exists
// and include_dir directives name read where they stand, then
// postgresql.auto.conf, as ProcessConfigFile does (guc-file.c). Each name
// is lowercased (names are case-insensitive) and has the value of its
// last line, unquoted. A missing postgresql.conf or postgresql.auto.conf
// reads as empty; a missing include, a line PostgreSQL could not parse or
// includes nested deeper than it allows is an error naming the file and
// line, on which PostgreSQL would refuse to start too.
func ServerSettings(dir string) (map[string]string, error) {
	settings := make(map[string]string)
	for _, name := range []string{"postgresql.conf", "postgresql.auto.conf"} {
		if err := readConf(filepath.Join(dir, name), true, 0, settings); err != nil {
			return nil, err
		}
	}
	return settings, nil
}

// readConf reads the configuration file path into settings, following
// its includes; a missing file is skipped when optional.
func readConf(path string, optional bool, depth int, settings map[string]string) error {
	if depth > maxConfDepth {
		return fmt.Errorf("read %s: includes nested deeper than %d", path, maxConfDepth)
	}
	b, err := readConfFile(path)
	if optional && os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for n, line := range strings.Split(string(b), "\n") {
		name, value, ok, err := parseConfLine(line)
		if err != nil {
			return fmt.Errorf("%s line %d: %w", path, n+1, err)
		}
		if !ok {
			continue
		}
		switch name {
		case "include", "include_if_exists":
			err = readConf(confPath(path, value), name == "include_if_exists", depth+1, settings)
		case "include_dir":
			err = readConfDir(confPath(path, value), depth+1, settings)
		default:
			settings[name] = value
		}
		if err != nil {
			return fmt.Errorf("%s line %d: %w", path, n+1, err)
		}
	}
	return nil
}

// readConfDir reads the files of an include_dir directory whose names end
// in .conf and do not start with a dot, in name order, as PostgreSQL does
// (conffiles.c GetConfFilesInDir).
func readConfDir(dir string, depth int, settings map[string]string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read include_dir: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".conf") && !strings.HasPrefix(n, ".") && !e.IsDir() {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if err := readConf(filepath.Join(dir, n), false, depth, settings); err != nil {
			return err
		}
	}
	return nil
}

// confPath is an include's path: relative to the directory of the file
// that names it (AbsoluteConfigLocation).
func confPath(from, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(filepath.Dir(from), name)
}

// readConfFile reads a regular file of at most maxConfFile bytes. It
// follows links, as PostgreSQL does, but refuses a FIFO or a device,
// which would block or never end.
func readConfFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file (%v)", path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAtMost(f, path, maxConfFile)
}

// parseConfLine reads one line of a configuration file as guc-file.l
// does: a name (letters, digits, _ and $, with one optional dot for a
// custom setting), an optional =, a value (a single-quoted string or a
// run of letters, digits and -._:/+), then nothing but a comment. ok is
// false for a blank or comment line.
func parseConfLine(line string) (name, value string, ok bool, err error) {
	s := strings.TrimLeft(line, " \t\r\f")
	if s == "" || s[0] == '#' {
		return "", "", false, nil
	}
	i := 0
	for i < len(s) && (isConfIDChar(s[i]) || s[i] == '.') {
		i++
	}
	name = s[:i]
	if name == "" || !isConfIDStart(name[0]) {
		return "", "", false, fmt.Errorf("syntax error: no setting name")
	}
	s = strings.TrimLeft(s[i:], " \t\r\f")
	if strings.HasPrefix(s, "=") {
		s = strings.TrimLeft(s[1:], " \t\r\f")
	}
	if strings.HasPrefix(s, "'") {
		value, s, err = unquoteConf(s)
		if err != nil {
			return "", "", false, fmt.Errorf("setting %s: %w", name, err)
		}
	} else {
		j := 0
		for j < len(s) && (isConfIDChar(s[j]) || strings.IndexByte("-._:/+", s[j]) >= 0) {
			j++
		}
		if j == 0 {
			return "", "", false, fmt.Errorf("syntax error: setting %s has no value", name)
		}
		value, s = s[:j], s[j:]
	}
	s = strings.TrimLeft(s, " \t\r\f")
	if s != "" && s[0] != '#' {
		return "", "", false, fmt.Errorf("syntax error after the value of %s", name)
	}
	return strings.ToLower(name), value, true, nil
}

func isConfIDStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= 0x80
}

func isConfIDChar(c byte) bool {
	return isConfIDStart(c) || '0' <= c && c <= '9' || c == '$'
}

// unquoteConf reads the single-quoted string s starts with and returns
// its value and what follows it. Inside, two quotes are one and a backslash
// escapes the next character (\b \f \n \r \t, or up to three octal
// digits), as DeescapeQuotedString does.
func unquoteConf(s string) (value, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' && i+1 < len(s) && s[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == '\'':
			return b.String(), s[i+1:], nil
		case c == '\\' && i+1 < len(s):
			i++
			switch e := s[i]; e {
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '0', '1', '2', '3', '4', '5', '6', '7':
				v := int(e - '0')
				for k := 0; k < 2 && i+1 < len(s) && '0' <= s[i+1] && s[i+1] <= '7'; k++ {
					i++
					v = v*8 + int(s[i]-'0')
				}
				b.WriteByte(byte(v))
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("unterminated quoted string")
}
