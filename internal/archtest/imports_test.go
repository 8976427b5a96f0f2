// Package archtest checks that the module keeps the shape docs/architecture.md
// describes: who may import whom, what library code never does, and how long
// a library source file may grow. It has no code of its own, only tests.
package archtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/troupehq/troupe"

// pkg is what `go list -json` says of one package (test files excluded).
type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	Deps       []string
	GoFiles    []string
	CgoFiles   []string
}

// listPackages returns every package of the module, keyed by import path
// relative to the module ("store/postgres"; "" is the root).
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = moduleRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs[rel(p.ImportPath)] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; the module has more", len(pkgs))
	}
	return pkgs
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", dir, err)
	}
	return dir
}

// rel turns a module import path into its path inside the module; other
// import paths are returned unchanged.
func rel(path string) string {
	if path == module {
		return ""
	}
	return strings.TrimPrefix(path, module+"/")
}

func inModule(path string) bool { return path == module || strings.HasPrefix(path, module+"/") }

// under reports whether rel path p is dir or below it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// library reports whether p is library code: neither an example, nor a
// command, nor this test package.
func library(p string) bool {
	return !under(p, "examples") && !under(p, "cmd") && p != "internal/archtest"
}

// testSupport reports whether p is a package that exists to serve tests
// (internal/pgtest, internal/oteltest, projection/internal/projtest,
// store/storetest, …): its name ends in "test". Such packages may set up an
// OpenTelemetry SDK and read the environment, as tests do.
func testSupport(p string) bool {
	i := strings.LastIndex(p, "/")
	return strings.HasSuffix(p[i+1:], "test")
}

// stdlib reports whether an import path belongs to the standard library.
func stdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// rule is one constraint on the dependencies of the packages it covers.
type rule struct {
	name string
	// covers selects the packages the rule applies to.
	covers func(p string) bool
	// direct checks direct imports only when true, the whole non-test
	// dependency closure otherwise.
	direct bool
	// forbidden reports whether a dependency (a rel path for the module's
	// own packages, the import path otherwise) breaks the rule.
	forbidden func(dep string) bool
}

func isPgx(dep string) bool { return strings.HasPrefix(dep, "github.com/jackc/") }

func isProtoactor(dep string) bool {
	return strings.HasPrefix(dep, "github.com/asynkron/protoactor-go")
}

func isOTelSDK(dep string) bool {
	return strings.HasPrefix(dep, "go.opentelemetry.io/otel/sdk") ||
		strings.HasPrefix(dep, "go.opentelemetry.io/otel/exporters")
}

// mod reports whether the import path dep is the module's package rel or
// one below it.
func mod(dep, rel string) bool { return under(dep, module+"/"+rel) }

// ownOtherThan reports whether dep is a package of the module other than the
// ones named.
func ownOtherThan(dep string, allowed ...string) bool {
	if !inModule(dep) {
		return false
	}
	for _, a := range allowed {
		if dep == module+"/"+a {
			return false
		}
	}
	return true
}

var rules = []rule{
	{
		name:      "decider imports the standard library only",
		covers:    func(p string) bool { return p == "decider" },
		forbidden: func(dep string) bool { return !stdlib(dep) },
	},
	{
		name:   "store, the backend-neutral contract, imports no driver and nothing of the module but decider",
		covers: func(p string) bool { return p == "store" },
		forbidden: func(dep string) bool {
			return isPgx(dep) || ownOtherThan(dep, "decider")
		},
	},
	{
		name:   "store/memory and store/storetest depend on store (and its driver-free upcasting helper), never on a driver",
		covers: func(p string) bool { return p == "store/memory" || p == "store/storetest" },
		forbidden: func(dep string) bool {
			return isPgx(dep) || ownOtherThan(dep, "decider", "store", "store/internal/upcasting")
		},
	},
	{
		name:   "store/shred wraps any store: it depends on store, never on a driver",
		covers: func(p string) bool { return p == "store/shred" },
		forbidden: func(dep string) bool {
			return isPgx(dep) || ownOtherThan(dep, "decider", "store")
		},
	},
	{
		name:   "store/postgres imports neither actor, projection nor tenancy",
		covers: func(p string) bool { return under(p, "store/postgres") },
		forbidden: func(dep string) bool {
			return mod(dep, "actor") || mod(dep, "projection") || mod(dep, "tenancy")
		},
	},
	{
		name:   "store, projection and tenancy never import actor",
		covers: func(p string) bool { return under(p, "store") || under(p, "projection") || under(p, "tenancy") },
		forbidden: func(dep string) bool {
			return mod(dep, "actor")
		},
	},
	{
		name:   "tenancy imports neither actor nor projection",
		covers: func(p string) bool { return under(p, "tenancy") },
		forbidden: func(dep string) bool {
			return mod(dep, "projection") || mod(dep, "actor")
		},
	},
	{
		name:   "telemetry uses the OpenTelemetry API only: no SDK, no driver, nothing else of the module",
		covers: func(p string) bool { return p == "telemetry" },
		forbidden: func(dep string) bool {
			return isOTelSDK(dep) || isPgx(dep) || inModule(dep)
		},
	},
	{
		name:   "only actor imports protoactor-go",
		covers: func(p string) bool { return !under(p, "actor") },
		direct: true,
		forbidden: func(dep string) bool {
			return isProtoactor(dep)
		},
	},
	{
		// Direct imports only: protoactor-go itself imports the metric SDK
		// and its Prometheus exporter.
		name:   "library code never sets up an OpenTelemetry SDK (only examples/ and cmd/ do)",
		covers: func(p string) bool { return library(p) && !testSupport(p) },
		direct: true,
		forbidden: func(dep string) bool {
			return isOTelSDK(dep)
		},
	},
	{
		name:   "library code never imports examples/ or cmd/",
		covers: library,
		forbidden: func(dep string) bool {
			return mod(dep, "examples") || mod(dep, "cmd")
		},
	},
	{
		name:   "cmd/ imports nothing from examples/",
		covers: func(p string) bool { return under(p, "cmd") },
		forbidden: func(dep string) bool {
			return mod(dep, "examples")
		},
	},
}

// TestImportRules checks every rule against `go list`'s view of the module.
func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	paths := make([]string, 0, len(pkgs))
	for p := range pkgs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, r := range rules {
		covered := 0
		for _, p := range paths {
			if !r.covers(p) {
				continue
			}
			covered++
			deps := pkgs[p].Deps
			if r.direct {
				deps = pkgs[p].Imports
			}
			var bad []string
			for _, dep := range deps {
				if r.forbidden(dep) {
					bad = append(bad, dep)
				}
			}
			if len(bad) > 0 {
				t.Errorf("%s: %s depends on %s", r.name, orRoot(p), strings.Join(bad, ", "))
			}
		}
		if covered == 0 {
			t.Errorf("rule %q covers no package: the layout changed and the rule no longer checks anything", r.name)
		}
	}
}

func orRoot(p string) string {
	if p == "" {
		return module
	}
	return p
}

// TestRulesCatchViolations feeds each rule a dependency it must refuse, so a
// rule that was loosened by mistake fails here.
func TestRulesCatchViolations(t *testing.T) {
	cases := []struct {
		pkg, dep string
	}{
		{"decider", "github.com/jackc/pgx/v5"},
		{"store", "github.com/jackc/pgx/v5"},
		{"store", "tenancy"},
		{"store", "telemetry"},
		{"store/memory", "store/postgres"},
		{"store/postgres", "projection"},
		{"store/postgres", "tenancy"},
		{"projection", "actor"},
		{"projection/readmodel", "actor"},
		{"tenancy", "projection"},
		{"telemetry", "go.opentelemetry.io/otel/sdk/trace"},
		{"telemetry", "github.com/jackc/pgx/v5"},
		{"projection", "github.com/asynkron/protoactor-go/actor"},
		{"actor", "go.opentelemetry.io/otel/sdk/trace"},
		{"cmd/troupe", "examples/cart/service"},
		{"cmd/troupe/internal/bench", "examples/cart/cart"},
		{"store", "examples/cart/cart"},
	}
	for _, c := range cases {
		dep := c.dep
		if !strings.Contains(strings.Split(dep, "/")[0], ".") {
			dep = module + "/" + dep
		}
		caught := false
		for _, r := range rules {
			if r.covers(c.pkg) && r.forbidden(dep) {
				caught = true
				break
			}
		}
		if !caught {
			t.Errorf("no rule refuses %s depending on %s", c.pkg, c.dep)
		}
	}
}

// maxLibraryFileLines is the longest a library source file may be: a longer
// one is usually two ideas.
const maxLibraryFileLines = 700

// TestLibraryFilesStaySmall fails when a non-test library source file grows
// past maxLibraryFileLines.
func TestLibraryFilesStaySmall(t *testing.T) {
	for p, info := range listPackages(t) {
		if !library(p) {
			continue
		}
		for _, f := range append(info.GoFiles, info.CgoFiles...) {
			path := filepath.Join(info.Dir, f)
			n, err := countLines(path)
			if err != nil {
				t.Fatal(err)
			}
			if n > maxLibraryFileLines {
				t.Errorf("%s/%s has %d lines, more than %d: split it by idea", orRoot(p), f, n, maxLibraryFileLines)
			}
		}
	}
}

// forbiddenCalls are what library code never does: read the environment,
// print on its own or end the process.
var forbiddenCalls = []string{"os.Getenv(", "os.LookupEnv(", "os.Environ(", "log.Fatal", "log.Print", "fmt.Print", "os.Exit("}

// envAllowed are the library packages whose job is to read the environment
// besides the test-support ones: the command that runs a throwaway server.
var envAllowed = map[string]bool{"internal/pgserver/cmd/pgrun": true}

// TestLibraryNeverReadsEnvPrintsOrExits scans library source files for the
// calls of forbiddenCalls.
func TestLibraryNeverReadsEnvPrintsOrExits(t *testing.T) {
	for p, info := range listPackages(t) {
		if !library(p) || testSupport(p) || envAllowed[p] {
			continue
		}
		for _, f := range info.GoFiles {
			path := filepath.Join(info.Dir, f)
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(string(src), "\n") {
				code := line
				if j := strings.Index(code, "//"); j >= 0 {
					code = code[:j]
				}
				for _, call := range forbiddenCalls {
					if strings.Contains(code, call) {
						t.Errorf("%s:%d: library code calls %s", filepath.Join(orRoot(p), f), i+1, strings.TrimSuffix(call, "("))
					}
				}
			}
		}
	}
}

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1024*1024), 1024*1024)
	for sc.Scan() {
		n++
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}
