package otelwire_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDocsListEveryAttributeAndMetric keeps docs/telemetry.md complete: every
// Attr* and Metric* constant of this package, and every Log* and meta* (event
// metadata key) constant of package telemetry, must appear there, in
// backquotes.
func TestDocsListEveryAttributeAndMetric(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/telemetry.md")
	require.NoError(t, err)

	fset := token.NewFileSet()
	var names []string
	var files []string
	for _, dir := range []string{".", "../../telemetry"} {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".go") && !strings.HasSuffix(e.Name(), "_test.go") {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
	}
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, 0)
		require.NoError(t, err)
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if !hasAnyPrefix(id.Name, "Attr", "Metric", "Log", "meta") || i >= len(vs.Values) {
						continue
					}
					lit := stringLit(vs.Values[i])
					if lit == "" {
						continue
					}
					names = append(names, id.Name)
					require.Contains(t, string(doc), "`"+lit+"`", "docs/telemetry.md does not list %s (%q)", id.Name, lit)
				}
			}
		}
	}
	require.GreaterOrEqual(t, len(names), 40, "parsed too few constants: %v", names)
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// stringLit returns the string of "x" or attribute.Key("x"), else "".
func stringLit(e ast.Expr) string {
	if c, ok := e.(*ast.CallExpr); ok && len(c.Args) == 1 {
		e = c.Args[0]
	}
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != token.STRING {
		return ""
	}
	s, err := strconv.Unquote(b.Value)
	if err != nil {
		return ""
	}
	return s
}
