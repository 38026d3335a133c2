package deploy_test

import (
	"fmt"
	"strings"
)

// The module has no YAML library, so the manifests are read with this
// parser of the block-style subset they are written in: mappings,
// sequences, plain and quoted scalars, `|` block scalars, flow sequences of
// scalars and `{}`. It fails on anything else (tabs, bad indentation,
// unclosed quotes, duplicate keys), which is the point: a manifest that
// does not parse here is not the plain YAML the examples promise.

type yamlLine struct {
	n      int // 1-based line number
	indent int
	text   string // without indentation and comment
	raw    string // the line as written, for block scalars
}

// parseYAML returns the documents of a multi-document YAML stream.
func parseYAML(src string) ([]any, error) {
	var docs []any
	var cur []yamlLine
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		p := &yamlParser{lines: cur}
		first, ok := p.next()
		if !ok {
			cur = nil
			return nil
		}
		v, err := p.node(first.indent)
		if err != nil {
			return err
		}
		if p.i < len(p.lines) {
			return fmt.Errorf("line %d: unexpected indentation", p.lines[p.i].n)
		}
		docs = append(docs, v)
		cur = nil
		return nil
	}
	for i, raw := range strings.Split(src, "\n") {
		if strings.HasPrefix(raw, "---") {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		trimmed := strings.TrimLeft(raw, " ")
		if strings.HasPrefix(trimmed, "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", i+1)
		}
		text := stripComment(trimmed)
		if text == "" {
			// Blank and comment lines still belong to a block scalar.
			cur = append(cur, yamlLine{n: i + 1, indent: -1, raw: raw})
			continue
		}
		cur = append(cur, yamlLine{n: i + 1, indent: len(raw) - len(trimmed), text: text, raw: raw})
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

// stripComment drops a # comment outside quotes and trailing spaces.
func stripComment(s string) string {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || s[i-1] == ' '):
			return strings.TrimRight(s[:i], " ")
		}
	}
	return strings.TrimRight(s, " ")
}

type yamlParser struct {
	lines []yamlLine
	i     int
}

// next skips blank lines and returns the next content line.
func (p *yamlParser) next() (yamlLine, bool) {
	for p.i < len(p.lines) && p.lines[p.i].indent < 0 {
		p.i++
	}
	if p.i >= len(p.lines) {
		return yamlLine{}, false
	}
	return p.lines[p.i], true
}

// node parses the block starting at the next line, which must be indented
// by exactly indent.
func (p *yamlParser) node(indent int) (any, error) {
	l, ok := p.next()
	if !ok {
		return nil, nil
	}
	if l.indent != indent {
		return nil, fmt.Errorf("line %d: indentation %d, want %d", l.n, l.indent, indent)
	}
	if l.text == "-" || strings.HasPrefix(l.text, "- ") {
		return p.sequence(indent)
	}
	return p.mapping(indent, nil)
}

func (p *yamlParser) sequence(indent int) ([]any, error) {
	var out []any
	for {
		l, ok := p.next()
		if !ok || l.indent < indent {
			return out, nil
		}
		if l.indent > indent || !(l.text == "-" || strings.HasPrefix(l.text, "- ")) {
			return nil, fmt.Errorf("line %d: want a sequence item at indentation %d", l.n, indent)
		}
		item := strings.TrimSpace(strings.TrimPrefix(l.text, "-"))
		switch {
		case item == "":
			p.i++
			v, err := p.child(indent)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		case isMapEntry(item):
			// "- key: value" starts a mapping indented past the dash.
			inner := indent + (len(l.text) - len(strings.TrimLeft(l.text[1:], " ")))
			p.lines[p.i].indent = inner
			p.lines[p.i].text = item
			m, err := p.mapping(inner, nil)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		default:
			p.i++
			v, err := scalar(item, l.n)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
}

// child parses the block nested under a line at indent, or nil if none.
func (p *yamlParser) child(indent int) (any, error) {
	l, ok := p.next()
	if !ok || l.indent <= indent {
		return nil, nil
	}
	return p.node(l.indent)
}

// isMapEntry tells whether s is "key:" or "key: value" (key unquoted).
func isMapEntry(s string) bool {
	if strings.HasPrefix(s, "\"") || strings.HasPrefix(s, "'") || strings.HasPrefix(s, "[") || strings.HasPrefix(s, "{") {
		return false
	}
	k, _, ok := strings.Cut(s, ":")
	return ok && k != "" && (strings.HasSuffix(s, ":") || strings.Contains(s, ": "))
}

func (p *yamlParser) mapping(indent int, out map[string]any) (map[string]any, error) {
	if out == nil {
		out = map[string]any{}
	}
	for {
		l, ok := p.next()
		if !ok || l.indent < indent {
			return out, nil
		}
		if l.indent > indent || !isMapEntry(l.text) {
			return nil, fmt.Errorf("line %d: want \"key: value\" at indentation %d", l.n, indent)
		}
		key, rest, _ := strings.Cut(l.text, ":")
		rest = strings.TrimSpace(rest)
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", l.n, key)
		}
		p.i++
		switch rest {
		case "":
			v, err := p.child(indent)
			if err != nil {
				return nil, err
			}
			// A sequence may sit at the key's own indentation.
			if nl, ok := p.next(); v == nil && ok && nl.indent == indent && strings.HasPrefix(nl.text, "- ") {
				v, err = p.sequence(indent)
				if err != nil {
					return nil, err
				}
			}
			out[key] = v
		case "|", "|-":
			out[key] = p.blockScalar(indent)
		default:
			v, err := scalar(rest, l.n)
			if err != nil {
				return nil, err
			}
			out[key] = v
		}
	}
}

// blockScalar collects the lines indented past indent, as written.
func (p *yamlParser) blockScalar(indent int) string {
	var lines []string
	strip := -1
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		ind := len(l.raw) - len(strings.TrimLeft(l.raw, " "))
		if strings.TrimSpace(l.raw) != "" && ind <= indent {
			break
		}
		if strip < 0 && strings.TrimSpace(l.raw) != "" {
			strip = ind
		}
		lines = append(lines, l.raw)
		p.i++
	}
	for i, s := range lines {
		if len(s) >= strip && strip > 0 {
			lines[i] = s[strip:]
		}
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n") + "\n"
}

// scalar parses a plain, quoted or flow scalar.
func scalar(s string, line int) (any, error) {
	switch {
	case strings.HasPrefix(s, "\""):
		if len(s) < 2 || !strings.HasSuffix(s, "\"") {
			return nil, fmt.Errorf("line %d: unclosed double quote", line)
		}
		return s[1 : len(s)-1], nil
	case strings.HasPrefix(s, "'"):
		if len(s) < 2 || !strings.HasSuffix(s, "'") {
			return nil, fmt.Errorf("line %d: unclosed single quote", line)
		}
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	case s == "{}":
		return map[string]any{}, nil
	case strings.HasPrefix(s, "["):
		if !strings.HasSuffix(s, "]") {
			return nil, fmt.Errorf("line %d: unclosed flow sequence", line)
		}
		var out []any
		for _, e := range strings.Split(s[1:len(s)-1], ",") {
			if e = strings.TrimSpace(e); e == "" {
				continue
			}
			v, err := scalar(e, line)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case strings.HasPrefix(s, "{") || strings.HasPrefix(s, "&") || strings.HasPrefix(s, "*") || strings.HasPrefix(s, "!"):
		return nil, fmt.Errorf("line %d: %q is beyond the YAML subset the manifests use", line, s)
	}
	return s, nil
}
