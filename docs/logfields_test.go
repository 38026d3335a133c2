package docs

import (
	"go/ast"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// TestLogDurationFields: every duration hoard logs is in whole
// milliseconds, Int64(name, d.Round(time.Millisecond).Milliseconds()),
// with a field name ending in _ms, as monitoring.md says, so that a
// dashboard reading the JSON logs knows the unit. zerolog's Dur would log
// fractions of a millisecond with a dozen digits.
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
			if !ok {
				return true
			}
			if sel.Sel.Name == "Dur" {
				t.Errorf("%s: Dur logs fractions of a millisecond: log Int64(name_ms, d.Round(time.Millisecond).Milliseconds())",
					fset.Position(call.Pos()))
				return true
			}
			ms, ok := call.Args[1].(*ast.CallExpr)
			if !ok || sel.Sel.Name != "Int64" {
				return true
			}
			if msSel, ok := ms.Fun.(*ast.SelectorExpr); !ok || msSel.Sel.Name != "Milliseconds" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: a duration logged with a field name that is not a literal", fset.Position(call.Pos()))
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
		t.Fatal("no durations logged found: the walk missed the sources")
	}
}
