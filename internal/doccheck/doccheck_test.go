// Package doccheck compiles every Go snippet of README.md and docs/*.md, so
// the docs can't drift from the API. It has no code of its own, only tests.
//
// A snippet is a fenced code block tagged go. One that starts with a package
// clause is compiled as it stands. Any other is a fragment: its top-level
// declarations (func, type, var, const) go to package level, its statements
// into a function body; it may use, without declaring them, the variables of
// [prelude] (ctx, pool, db, logger, codec, host, st, es, tp, mp, poolCfg), and
// may return an error (its statements are the body of a function returning
// error); the imports it needs
// are added from [knownImports] by the package names it uses. Each snippet is
// compiled as a package of its own through `go build -overlay`, so nothing is
// written into the source tree. A block preceded by the line
// "<!-- doccheck: continued -->" continues the file's previous go block (a
// guide that builds a program step by step): the two are compiled as one. A
// block that is not meant to compile is tagged text, not go.
package doccheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/troupehq/troupe"

// knownImports maps the package names a fragment may use to their import
// paths.
var knownImports = map[string]string{
	"actor":      module + "/actor",
	"decider":    module + "/decider",
	"store":      module + "/store",
	"postgres":   module + "/store/postgres",
	"memory":     module + "/store/memory",
	"storetest":  module + "/store/storetest",
	"shred":      module + "/store/shred",
	"projection": module + "/projection",
	"readmodel":  module + "/projection/readmodel",
	"perstream":  module + "/projection/perstream",
	"consumer":   module + "/projection/consumer",
	"tenancy":    module + "/tenancy",
	"telemetry":  module + "/telemetry",
	"cli":        module + "/cli",
	"troupetest": module + "/troupetest",
	"cart":       module + "/examples/cart/cart",
	"pgx":        "github.com/jackc/pgx/v5",
	"pgxpool":    "github.com/jackc/pgx/v5/pgxpool",
	"otelpgx":    "github.com/exaring/otelpgx",
	"otel":       "go.opentelemetry.io/otel",
	"sdktrace":   "go.opentelemetry.io/otel/sdk/trace",
	"sdkmetric":  "go.opentelemetry.io/otel/sdk/metric",
	"trace":      "go.opentelemetry.io/otel/trace",
	"metric":     "go.opentelemetry.io/otel/metric",
	"context":    "context",
	"errors":     "errors",
	"fmt":        "fmt",
	"http":       "net/http",
	"json":       "encoding/json",
	"log":        "log",
	"os":         "os",
	"signal":     "os/signal",
	"slog":       "log/slog",
	"strings":    "strings",
	"sync":       "sync",
	"syscall":    "syscall",
	"testing":    "testing",
	"time":       "time",
}

// prelude declares what fragments may use without declaring it. Each name
// is used through blank assignments, so an unused one is no error.
var prelude = []struct{ name, typ, pkg string }{
	{"ctx", "context.Context", "context"},
	{"pool", "*pgxpool.Pool", "pgxpool"},
	{"db", "postgres.DB", "postgres"},
	{"logger", "*slog.Logger", "slog"},
	{"codec", "*store.JSONCodec", "store"},
	{"host", "*actor.Host", "actor"},
	{"st", "store.EventStore", "store"},
	{"es", "*postgres.Store", "postgres"},
	{"tp", "trace.TracerProvider", "trace"},
	{"mp", "metric.MeterProvider", "metric"},
	{"poolCfg", "*pgxpool.Config", "pgxpool"},
}

// continuedMarker, on the line before a go block, joins the block to the
// previous one.
const continuedMarker = "<!-- doccheck: continued -->"

// snippet is one go code block of a Markdown file.
type snippet struct {
	file string // relative to the module root
	line int    // of the block's first code line
	code string
}

func (s snippet) String() string { return fmt.Sprintf("%s:%d", s.file, s.line) }

// extract returns the go blocks of a Markdown document.
func extract(file, text string) []snippet {
	var out []snippet
	var cur *snippet
	var buf strings.Builder
	continued, prev := false, ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && (trimmed == "```go" || trimmed == "```golang"):
			cur = &snippet{file: file, line: n + 1}
			continued = prev == continuedMarker && len(out) > 0
			buf.Reset()
		case cur != nil && trimmed == "```":
			cur.code = buf.String()
			if continued {
				out[len(out)-1].code += cur.code
			} else {
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil:
			buf.WriteString(line)
			buf.WriteByte('\n')
		}
		if trimmed != "" {
			prev = trimmed
		}
	}
	return out
}

// render turns a snippet into a compilable Go file of package pkg.
func render(s snippet, pkg string) ([]byte, error) {
	if strings.HasPrefix(strings.TrimSpace(s.code), "package ") {
		return []byte(s.code), nil
	}
	fset := token.NewFileSet()
	// Split the fragment into top-level declarations and statements by
	// parsing it as a function body and moving func declarations out:
	// Go allows type, var and const declarations in a body, not funcs.
	decls, stmts := splitFuncs(s.code)
	body := "func snippet() error {\n" + stmts + "\nreturn nil\n}\n"
	src := "package " + pkg + "\n\n" + decls + "\n" + body
	f, err := parser.ParseFile(fset, "", src, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("%s does not parse as a Go fragment: %w", s, err)
	}
	// Blank-assign every name the body declares at its top level, so a
	// fragment that shows a value without using it still compiles.
	var fn *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "snippet" {
			fn = fd
		}
	}
	var blanks []string
	for _, st := range fn.Body.List {
		blanks = append(blanks, declared(st)...)
	}
	used := usedPackages(f)
	for _, p := range prelude {
		used[p.pkg] = true
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "package %s\n\nimport (\n", pkg)
	names := make([]string, 0, len(used))
	for name := range used {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "\t%s %q\n", name, knownImports[name])
	}
	b.WriteString(")\n\nvar (\n")
	for _, p := range prelude {
		fmt.Fprintf(&b, "\t%s %s\n", p.name, p.typ)
	}
	b.WriteString(")\n\n")
	for _, p := range prelude {
		fmt.Fprintf(&b, "var _ = %s\n", p.name)
	}
	b.WriteString(decls)
	b.WriteString("\nfunc snippet() error {\n")
	b.WriteString(stmts)
	for _, name := range blanks {
		fmt.Fprintf(&b, "\t_ = %s\n", name)
	}
	b.WriteString("\treturn nil\n}\n")
	out, err := format.Source(b.Bytes())
	if err != nil {
		return b.Bytes(), nil // let the compiler say what is wrong
	}
	return out, nil
}

// splitFuncs moves the fragment's top-level func and type declarations
// (lines from "func " or "type " at column 0 to the next line that is "}" at
// column 0, or the one line when it closes its braces itself), and its
// var declarations spanning several lines (from "var " at column 0 to the
// next line that is "}" or ")" at column 0), out of its statements: a func
// can't be declared in a function body, and a type or variable used by
// such a func must be declared beside it.
func splitFuncs(code string) (decls, stmts string) {
	var d, s strings.Builder
	inDecl := false
	for _, line := range strings.SplitAfter(code, "\n") {
		switch {
		case !inDecl && (strings.HasPrefix(line, "func ") || strings.HasPrefix(line, "type ")):
			inDecl = strings.Count(line, "{") > strings.Count(line, "}") || strings.HasSuffix(strings.TrimSpace(line), "(")
			d.WriteString(line)
		case !inDecl && strings.HasPrefix(line, "var ") && opens(line):
			// A var declared over several lines (a group, a composite
			// literal): package level too, so the funcs can use it, as a
			// program's package-level variables. One-line vars stay
			// statements.
			inDecl = true
			d.WriteString(line)
		case inDecl:
			d.WriteString(line)
			if t := strings.TrimRight(line, "\n"); t == "}" || t == ")" {
				inDecl = false
			}
		default:
			s.WriteString(line)
		}
	}
	return d.String(), s.String()
}

// opens reports whether line opens more braces or parentheses than it
// closes.
func opens(line string) bool {
	return strings.Count(line, "{")+strings.Count(line, "(") > strings.Count(line, "}")+strings.Count(line, ")")
}

// declared returns the names a top-level statement of the body declares.
func declared(st ast.Stmt) []string {
	var names []string
	add := func(id *ast.Ident) {
		if id.Name != "_" {
			names = append(names, id.Name)
		}
	}
	switch st := st.(type) {
	case *ast.AssignStmt:
		if st.Tok == token.DEFINE {
			for _, e := range st.Lhs {
				if id, ok := e.(*ast.Ident); ok {
					add(id)
				}
			}
		}
	case *ast.DeclStmt:
		if gd, ok := st.Decl.(*ast.GenDecl); ok && gd.Tok == token.VAR {
			for _, spec := range gd.Specs {
				for _, id := range spec.(*ast.ValueSpec).Names {
					add(id)
				}
			}
		}
	}
	return names
}

// usedPackages returns the known package names f refers to (X in X.Sel).
func usedPackages(f *ast.File) map[string]bool {
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok {
				if _, known := knownImports[id.Name]; known {
					used[id.Name] = true
				}
			}
		}
		return true
	})
	return used
}

// compile builds every snippet as a package of its own under a directory of
// this package that does not exist on disk, through an overlay, and returns
// the compiler's complaints by snippet.
func compile(t *testing.T, root string, snippets []snippet) map[string]string {
	t.Helper()
	tmp := t.TempDir()
	overlay := map[string]string{}
	var pkgs []string
	bySource := map[string]snippet{}
	complaints := map[string]string{}
	for i, s := range snippets {
		pkg := fmt.Sprintf("s%03d", i)
		src, err := render(s, pkg)
		if err != nil {
			complaints[s.String()] = "\t" + err.Error() + "\n"
			continue
		}
		name := strings.NewReplacer("/", "_", ".", "_").Replace(s.file) + fmt.Sprintf("_line%d.go", s.line)
		path := filepath.Join(tmp, name)
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, "internal", "doccheck", "snippets", pkg)
		overlay[filepath.Join(dir, "snippet.go")] = path
		pkgs = append(pkgs, "./internal/doccheck/snippets/"+pkg)
		bySource[name] = s
	}
	if len(pkgs) == 0 {
		return complaints
	}
	ov, err := json.Marshal(map[string]any{"Replace": overlay})
	if err != nil {
		t.Fatal(err)
	}
	ovPath := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"build", "-o", os.DevNull, "-overlay", ovPath}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err == nil {
		if len(complaints) == 0 {
			return nil
		}
		return complaints
	}
	found := len(complaints)
	for _, line := range strings.Split(string(out), "\n") {
		for name, s := range bySource {
			if strings.Contains(line, name) {
				complaints[s.String()] += "\t" + strings.ReplaceAll(line, filepath.Join(tmp, name), "snippet") + "\n"
			}
		}
	}
	if len(complaints) == found {
		complaints["go build"] = string(out)
	}
	return complaints
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestDocSnippetsCompile compiles every go block of README.md and docs/*.md.
func TestDocSnippetsCompile(t *testing.T) {
	root := moduleRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	var all []snippet
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		relName, _ := filepath.Rel(root, f)
		all = append(all, extract(relName, string(text))...)
	}
	if len(all) < 10 {
		t.Fatalf("found %d go snippets in the docs; expected the docs' examples to be there", len(all))
	}
	complaints := compile(t, root, all)
	keys := make([]string, 0, len(complaints))
	for k := range complaints {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Errorf("%s does not compile:\n%s", k, complaints[k])
	}
	t.Logf("%d snippets from %d files checked", len(all), len(files))
}

// TestBrokenSnippetIsCaught makes sure the check can fail: a fragment that
// calls a function that does not exist, and one that does not parse.
func TestBrokenSnippetIsCaught(t *testing.T) {
	root := moduleRoot(t)
	good := snippet{file: "good.md", line: 1, code: "err := store.ErrVersionConflict\nfmt.Println(err, ctx)\n"}
	if c := compile(t, root, []snippet{good}); c != nil {
		t.Fatalf("a correct fragment was refused: %v", c)
	}
	for _, bad := range []snippet{
		{file: "bad.md", line: 3, code: "store.NoSuchFunction(ctx)\n"},
		{file: "bad.md", line: 9, code: "x := cart.AddItem{...}\n"},
	} {
		if c := compile(t, root, []snippet{bad}); c == nil {
			t.Errorf("the broken fragment %q compiled", bad.code)
		} else if _, named := c[bad.String()]; !named {
			t.Errorf("the complaint about %q does not name %s: %v", bad.code, bad, c)
		}
	}
}

// TestContinuedBlocksJoin checks that a block marked as continued is
// compiled with the one before it.
func TestContinuedBlocksJoin(t *testing.T) {
	md := "# Guide\n\n```go\nx := 1\n```\n\nThen:\n\n" + continuedMarker + "\n```go\nfmt.Println(x)\n```\n\n```go\ny := 2\n```\n"
	got := extract("guide.md", md)
	if len(got) != 2 {
		t.Fatalf("got %d snippets, want 2 (the continued block joined to the first): %+v", len(got), got)
	}
	if got[0].code != "x := 1\nfmt.Println(x)\n" || got[0].line != 4 {
		t.Errorf("joined snippet = %q at line %d", got[0].code, got[0].line)
	}
	if c := compile(t, moduleRoot(t), got[:1]); c != nil {
		t.Errorf("the joined snippet does not compile: %v", c)
	}
}

// TestReadmeSampleIsTheTestedExample checks that every line of the README's
// code sample stands in actor/example_quickstart_test.go, whose output `go
// test` checks, so the README shows code that runs as shown.
func TestReadmeSampleIsTheTestedExample(t *testing.T) {
	root := moduleRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, "actor", "example_quickstart_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	snippets := extract("README.md", string(readme))
	if len(snippets) == 0 {
		t.Fatal("README.md has no go code sample")
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(example), "\n") {
		have[strings.TrimSpace(line)] = true
	}
	for i, line := range strings.Split(snippets[0].code, "\n") {
		code := strings.TrimSpace(line)
		if j := strings.Index(code, " // "); j >= 0 {
			code = strings.TrimSpace(code[:j]) // the README shows the output as a comment
		}
		if code != "" && !have[code] {
			t.Errorf("README.md:%d: %q is not in actor/example_quickstart_test.go", snippets[0].line+i, code)
		}
	}
}

// TestReadmeOpensWithTheTwoCommands checks the README's first block: the
// two set-up commands and nothing else, the demo and the tests; .ci/run
// runs the second.
func TestReadmeOpensWithTheTwoCommands(t *testing.T) {
	root := moduleRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	commands, err := readmeCommands(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	if len(commands) != 2 || commands[0] != "make demo" || commands[1] != "make test" {
		t.Fatalf("README.md opens with the commands %q; want exactly make demo, then make test", commands)
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains("\n"+string(ci)+"\n", "\n"+commands[1]+"\n") {
		t.Fatalf(".ci/run does not run the README's test command %q", commands[1])
	}
}

// readmeCommands returns the commands (comments cut) of the first fenced
// block of a README, which must come before any other content but its
// title.
func readmeCommands(readme string) ([]string, error) {
	lines := strings.Split(readme, "\n")
	i := 0
	for i < len(lines) && (strings.TrimSpace(lines[i]) == "" || strings.HasPrefix(lines[i], "# ")) {
		i++
	}
	if i == len(lines) || !strings.HasPrefix(lines[i], "```") {
		return nil, fmt.Errorf("README.md does not open with a code block after its title")
	}
	var out []string
	for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
		cmd, _, _ := strings.Cut(lines[i], "#")
		if cmd = strings.TrimSpace(cmd); cmd != "" {
			out = append(out, cmd)
		}
	}
	return out, nil
}

func TestReadmeCommandsAreRead(t *testing.T) {
	got, err := readmeCommands("# T\n\n```sh\nmake demo   # a\nmake test # b\nmake other\n```\n\ntext\n")
	if err != nil || strings.Join(got, ",") != "make demo,make test,make other" {
		t.Fatalf("readmeCommands = %q, %v", got, err)
	}
	if _, err := readmeCommands("# T\n\nProse first.\n```sh\nmake demo\n```\n"); err == nil {
		t.Fatal("a README opening with prose is accepted")
	}
}
