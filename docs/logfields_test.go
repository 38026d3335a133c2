package docs

import (
	"go/ast"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// TestLogDurationFields: every duration hoard logs (zerolog's Dur, in
// milliseconds, the library's default unit) has a field name ending in
// _ms, as monitoring.md says, so that a dashboard reading the JSON logs
// knows the unit.
func TestLogDurationFields(t *testing.T) {
	fset := token.NewFileSet()
	var found int
	walkSources(t, fset, func(_ string, f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Dur" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: Dur with a field name that is not a literal", fset.Position(call.Pos()))
				return true
			}
			name, _ := strconv.Unquote(lit.Value)
			found++
			if !strings.HasSuffix(name, "_ms") {
				t.Errorf("%s: duration field %q does not end in _ms", fset.Position(call.Pos()), name)
			}
			return true
		})
	})
	if found == 0 {
		t.Fatal("no Dur calls found: the walk missed the sources")
	}
}
