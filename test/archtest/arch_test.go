package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// pkg is the part of `go list -json` output the rules need.
type pkg struct {
	ImportPath string
	Name       string
	Dir        string
	GoFiles    []string
	CgoFiles   []string
	Imports    []string // of the non-test files, for this build context
	Module     *struct{ Path string }
	Error      *struct{ Err string }
}

// moduleInfo is the module under test.
type moduleInfo struct {
	root string // directory of go.mod
	path string // module path
	pkgs []pkg
}

var (
	loadOnce sync.Once
	loaded   moduleInfo
	loadErr  error
)

// mustModule lists the module's packages once per test binary.
func mustModule(tb testing.TB) moduleInfo {
	tb.Helper()
	loadOnce.Do(func() { loaded, loadErr = loadModule() })
	if loadErr != nil {
		tb.Fatal(loadErr)
	}
	return loaded
}

func loadModule() (moduleInfo, error) {
	gomod, err := goCmd("", "env", "GOMOD")
	if err != nil {
		return moduleInfo{}, err
	}
	gomod = strings.TrimSpace(gomod)
	if gomod == "" || gomod == os.DevNull {
		return moduleInfo{}, errors.New("archtest: not inside a module (go env GOMOD is empty)")
	}
	m := moduleInfo{root: filepath.Dir(gomod)}
	if err := trackInputs(m.root); err != nil {
		return moduleInfo{}, err
	}
	out, err := goCmd(m.root, "list", "-e",
		"-json=ImportPath,Name,Dir,GoFiles,CgoFiles,Imports,Module,Error", "./...")
	if err != nil {
		return moduleInfo{}, err
	}
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return moduleInfo{}, fmt.Errorf("archtest: decode go list output: %w", err)
		}
		if p.Module != nil && m.path == "" {
			m.path = p.Module.Path
		}
		m.pkgs = append(m.pkgs, p)
	}
	if m.path == "" || len(m.pkgs) == 0 {
		return moduleInfo{}, fmt.Errorf("archtest: go list found no packages of a module under %s", m.root)
	}
	return m, nil
}

func goCmd(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("archtest: go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// trackInputs opens every directory of the module. The go command caches a
// test's result keyed on the files and directories the test opened, and
// what `go list` reads in its own process is invisible to it: without this,
// `go test ./...` would replay a cached pass after an import broke a rule.
// An opened directory is hashed with the names, sizes and times of its
// entries, so any change to any Go file invalidates the cached result.
func trackInputs(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
			return filepath.SkipDir // the go command ignores these too
		}
		return nil
	})
}

// The rules. Paths below are relative to the module path.

// domainThirdParty are the only modules outside the standard library that
// domain may import.
var domainThirdParty = []string{"github.com/oklog/ulid/v2"}

// domainForbiddenStd maps standard packages (and, for a trailing slash,
// their sub-packages) that domain must not import to the reason why.
var domainForbiddenStd = map[string]string{
	"crypto/rand":  "draws randomness (IDs and key material are passed in)",
	"math/rand":    "draws randomness (IDs and key material are passed in)",
	"math/rand/v2": "draws randomness (IDs and key material are passed in)",
	"os":           "performs I/O",
	"os/":          "performs I/O",
	"net":          "performs I/O",
	"net/":         "performs I/O",
	"io/ioutil":    "performs I/O",
	"syscall":      "performs I/O",
	"context":      "takes a context (domain is pure: no context, clock, randomness or I/O)",
	"log":          "logs (return errors instead)",
}

// clockFuncs are the functions of package time that read or wait on the
// wall clock.
var clockFuncs = []string{"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "Tick", "NewTimer", "NewTicker"}

// violation is one broken import rule.
type violation struct {
	Pkg, Import, Rule string
}

func (v violation) String() string { return fmt.Sprintf("%s imports %s: %s", v.Pkg, v.Import, v.Rule) }

// relTo returns p relative to the module path, and whether p is in the
// module at all.
func relTo(module, p string) (string, bool) {
	if p == module {
		return "", true
	}
	if rest, ok := strings.CutPrefix(p, module+"/"); ok {
		return rest, true
	}
	return "", false
}

// under reports whether rel is dir or inside it.
func under(rel, dir string) bool { return rel == dir || strings.HasPrefix(rel, dir+"/") }

// sharedAdapterCode is the directory under adapters/ of the code that
// several adapters share (one NATS connection policy, one chunked-blob
// format): every adapter may import it; it imports no adapter.
const sharedAdapterCode = "internal"

// adapterOf names the adapter rel belongs to ("adapters/x/..." is x).
func adapterOf(rel string) (string, bool) {
	if !under(rel, "adapters") {
		return "", false
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(rel, "adapters"), "/"), "/")
	return name, true
}

// isStandard applies the go command's own test: a standard-library import
// path has no dot in its first element.
func isStandard(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".")
}

func domainForbids(p string) (string, bool) {
	if why, ok := domainForbiddenStd[p]; ok {
		return why, true
	}
	for prefix, why := range domainForbiddenStd {
		if strings.HasSuffix(prefix, "/") && strings.HasPrefix(p, prefix) {
			return why, true
		}
	}
	return "", false
}

// importRules returns the rules package from breaks by importing imp.
func importRules(module, from, imp string) []string {
	fromRel, _ := relTo(module, from)
	impRel, ours := relTo(module, imp)
	var broken []string
	if under(fromRel, "domain") {
		switch {
		case ours && !under(impRel, "domain"):
			broken = append(broken, "domain imports nothing of ours outside domain/")
		case !ours && !isStandard(imp) && !slices.Contains(domainThirdParty, imp):
			broken = append(broken, "domain imports only the standard library and "+strings.Join(domainThirdParty, ", "))
		case !ours:
			if why, ok := domainForbids(imp); ok {
				broken = append(broken, "domain is pure and this package "+why)
			}
		}
	}
	if under(fromRel, "projections") && ours && !under(impRel, "domain") && !under(impRel, "projections") {
		broken = append(broken, "projections import only domain/... and projections/...")
	}
	if under(fromRel, "commands") && ours && !under(impRel, "domain") && !under(impRel, "projections") && !under(impRel, "commands") {
		broken = append(broken, "commands import only domain/..., projections/... and commands/...")
	}
	if x, ok := adapterOf(fromRel); ok && ours {
		switch y, ok := adapterOf(impRel); {
		case !ok || y == x:
		case y == sharedAdapterCode && x != sharedAdapterCode:
			// adapters/internal: code that several adapters share
		default:
			broken = append(broken, "adapters never import each other (wiring happens in cmd/); code they share lives in adapters/internal, which imports no adapter")
		}
	}
	if ours && under(impRel, "cmd") && !under(fromRel, "cmd") && !under(fromRel, "test") {
		broken = append(broken, "only cmd/ and test/ may import cmd/")
	}
	if ours && under(impRel, "test") && !under(fromRel, "test") {
		broken = append(broken, "production code never imports test/")
	}
	return broken
}

// importViolations checks every import of every package.
func importViolations(module string, pkgs []pkg) []violation {
	var vs []violation
	for _, p := range pkgs {
		if _, ours := relTo(module, p.ImportPath); !ours {
			continue
		}
		for _, imp := range p.Imports {
			for _, r := range importRules(module, p.ImportPath, imp) {
				vs = append(vs, violation{Pkg: p.ImportPath, Import: imp, Rule: r})
			}
		}
	}
	return vs
}

// clockUses reports every reference to a clock-reading function of package
// time in one parsed file (a call or a function value alike), and a dot
// import of time, which would hide them.
func clockUses(fset *token.FileSet, f *ast.File) []string {
	var local string
	var out []string
	for _, spec := range f.Imports {
		if p, _ := strconv.Unquote(spec.Path.Value); p != "time" {
			continue
		}
		switch {
		case spec.Name == nil:
			local = "time"
		case spec.Name.Name == ".":
			out = append(out, fmt.Sprintf("%s: dot-imports time, which hides clock reads", fset.Position(spec.Pos())))
		case spec.Name.Name != "_":
			local = spec.Name.Name
		}
	}
	if local == "" {
		return out
	}
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		// An identifier bound to the import has no object: the parser
		// resolves only declarations, so a local variable named time has
		// one and is not mistaken for the package.
		if id, ok := sel.X.(*ast.Ident); ok && id.Name == local && id.Obj == nil && slices.Contains(clockFuncs, sel.Sel.Name) {
			out = append(out, fmt.Sprintf("%s: time.%s reads the clock (pass time in as an argument)", fset.Position(sel.Pos()), sel.Sel.Name))
		}
		return true
	})
	return out
}

// docProblem checks a package's doc.go source: a package doc comment of at
// least one sentence, starting "Package <name> " unless it is a command.
// It returns "" when the comment is fine.
func docProblem(name string, src []byte) string {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "doc.go", src, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		return fmt.Sprintf("doc.go does not parse: %v", err)
	}
	if f.Name.Name != name {
		return fmt.Sprintf("doc.go is in package %s, not %s", f.Name.Name, name)
	}
	if f.Doc == nil {
		return "doc.go has no package doc comment (a comment directly above the package clause)"
	}
	text := strings.TrimSpace(f.Doc.Text())
	if name != "main" && !strings.HasPrefix(text, "Package "+name+" ") {
		return fmt.Sprintf("the package doc comment should start %q", "Package "+name+" ")
	}
	loc := sentenceEnd.FindStringIndex(text)
	if loc == nil || wordCount(text[:loc[0]]) < 4 {
		return "the package doc comment should be at least one sentence (of four words or more, links aside) saying what the package is for"
	}
	return ""
}

// sentenceEnd ends a sentence: a full stop, question or exclamation mark
// followed by a space or the end of the text (not the dot in "example.com").
var sentenceEnd = regexp.MustCompile(`[.!?](\s|$)`)

// wordCount counts the words of s, not counting links.
func wordCount(s string) int {
	n := 0
	for _, w := range strings.Fields(s) {
		if !strings.Contains(w, "://") {
			n++
		}
	}
	return n
}

// docViolations checks every package's doc.go, and for a package without
// one says which file holds its doc comment, if any.
func docViolations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		if p.Dir == "" || p.Name == "" {
			continue
		}
		src, err := os.ReadFile(filepath.Join(p.Dir, "doc.go"))
		if errors.Is(err, fs.ErrNotExist) {
			msg := fmt.Sprintf("%s has no doc.go", p.ImportPath)
			if where := docCommentFile(p); where != "" {
				msg += fmt.Sprintf(" (its package doc comment is in %s: move it to doc.go)", where)
			}
			out = append(out, msg)
			continue
		} else if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", p.ImportPath, err))
			continue
		}
		if problem := docProblem(p.Name, src); problem != "" {
			out = append(out, fmt.Sprintf("%s: %s", p.ImportPath, problem))
		}
	}
	return out
}

// docCommentFile names the file of p that carries a package doc comment.
func docCommentFile(p pkg) string {
	for _, name := range slices.Concat(p.GoFiles, p.CgoFiles) {
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err == nil && f.Doc != nil {
			return name
		}
	}
	return ""
}

func TestDependencyRules(t *testing.T) {
	m := mustModule(t)
	for _, p := range m.pkgs {
		if p.Error != nil {
			// Compile errors are the build's to report; imports of such a
			// package may be incomplete.
			t.Logf("%s does not load (%s); its imports are checked as far as go list saw them", p.ImportPath, p.Error.Err)
		}
	}
	for _, v := range importViolations(m.path, m.pkgs) {
		t.Error(v)
	}
}

func TestDomainReadsNoClock(t *testing.T) {
	m := mustModule(t)
	checked := 0
	for _, p := range m.pkgs {
		rel, ours := relTo(m.path, p.ImportPath)
		if !ours || !under(rel, "domain") {
			continue
		}
		for _, name := range slices.Concat(p.GoFiles, p.CgoFiles) { // non-test files only
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, 0)
			if err != nil {
				t.Errorf("%s: %v", p.ImportPath, err)
				continue
			}
			checked++
			for _, use := range clockUses(fset, f) {
				t.Errorf("%s: %s", p.ImportPath, use)
			}
		}
	}
	if checked == 0 {
		t.Errorf("found no domain source files under %s", m.root)
	}
}

func TestPackageDocs(t *testing.T) {
	for _, problem := range docViolations(mustModule(t).pkgs) {
		t.Error(problem)
	}
}

// The checker's own tests: each rule must fire on a violation and stay
// quiet on allowed imports.

func TestImportRules(t *testing.T) {
	const mod = "example.com/kb"
	tests := []struct {
		from, imp string
		want      int // number of broken rules
	}{
		{"domain", "fmt", 0},
		{"domain", "time", 0},
		{"domain", "log/slog", 0},
		{"domain", "github.com/oklog/ulid/v2", 0},
		{"domain", mod + "/domain/wire", 0},
		{"domain/wire", mod + "/domain", 0},
		{"domain", mod + "/projections", 1},
		{"domain/wire", mod + "/adapters/envelope", 1},
		{"domain", mod + "/test/fixtures", 2}, // outside domain, and test/
		{"domain", "github.com/oklog/ulid", 1},
		{"domain", "github.com/cockroachdb/pebble/v2", 1},
		{"domain", "crypto/rand", 1},
		{"domain", "math/rand", 1},
		{"domain", "math/rand/v2", 1},
		{"domain", "os", 1},
		{"domain", "os/exec", 1},
		{"domain", "net", 1},
		{"domain", "net/http", 1},
		{"domain", "context", 1},
		{"domain", "log", 1},
		{"domainx", "os", 0}, // not domain
		{"projections", mod + "/domain", 0},
		{"projections/kmsstate", mod + "/projections", 0},
		{"projections/kmsstate", mod + "/domain/wire", 0},
		{"projections", mod + "/commands", 1},
		{"projections/kmsstate", mod + "/adapters/pebblestore", 1},
		{"commands", mod + "/projections/kmsstate", 0},
		{"commands", mod + "/domain", 0},
		{"commands/sub", mod + "/commands", 0},
		{"commands", mod + "/adapters/clock", 1},
		{"commands", mod + "/cmd/kmsbackup", 2},
		{"adapters/envelope", mod + "/commands", 0},
		{"adapters/envelope", mod + "/domain/wire", 0},
		{"adapters/envelope", mod + "/adapters/envelope/internal/x", 0},
		{"adapters/envelope/internal/x", mod + "/adapters/envelope", 0},
		{"adapters/envelope", mod + "/adapters/pebblestore", 1},
		{"adapters/envelope/sub", mod + "/adapters/pebblestore/sub", 1},
		{"adapters/envelope", mod + "/adapters/envelopex", 1},
		{"adapters/envelope", mod + "/adapters", 1},
		{"adapters", mod + "/adapters/envelope", 1},
		{"adapters/bus", mod + "/adapters/internal/natsconn", 0},
		{"adapters/internal/natsconn", mod + "/adapters/internal/blobformat", 0},
		{"adapters/internal/natsconn", mod + "/adapters/natsjs", 1},
		{"adapters/httpapi", mod + "/cmd/kmsbackup", 1},
		{"adapters/httpapi", mod + "/test/conformance/eventlog", 1},
		{"cmd/kmsbackup", mod + "/adapters/httpapi", 0},
		{"cmd/kmsbackup", mod + "/cmd/kmsbackup/internal/cli", 0},
		{"test/e2e", mod + "/cmd/kmsbackup", 0},
		{"test/e2e", mod + "/test/conformance/eventlog", 0},
		{"test/conformance/eventlog", mod + "/commands", 0},
		{"", mod + "/test/e2e", 1}, // the module root package
		{"tools", mod + "/cmd/kmsbackup", 1},
		{"commands", "github.com/cockroachdb/pebble/v2", 0}, // third parties are not ruled outside domain
	}
	for _, tt := range tests {
		from := mod
		if tt.from != "" {
			from += "/" + tt.from
		}
		got := importRules(mod, from, tt.imp)
		if len(got) != tt.want {
			t.Errorf("%s importing %s broke %d rules %q, want %d", tt.from, tt.imp, len(got), got, tt.want)
		}
	}
	// A violation names the package, the import and the rule.
	vs := importViolations(mod, []pkg{{ImportPath: mod + "/adapters/a", Imports: []string{"fmt", mod + "/adapters/b"}}})
	want := []violation{{mod + "/adapters/a", mod + "/adapters/b", "adapters never import each other (wiring happens in cmd/); code they share lives in adapters/internal, which imports no adapter"}}
	if diff := cmp.Diff(want, vs); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	if s := vs[0].String(); !strings.Contains(s, mod+"/adapters/a imports "+mod+"/adapters/b") {
		t.Errorf("violation reads %q", s)
	}
}

func TestClockUses(t *testing.T) {
	tests := []struct {
		name, src string
		want      int
	}{
		{"call", `package d; import "time"; func f() time.Time { return time.Now() }`, 1},
		{"function value", `package d; import "time"; var now = time.Now`, 1},
		{"since", `package d; import "time"; func f(t time.Time) time.Duration { return time.Since(t) }`, 1},
		{"sleep and timer", `package d; import "time"; func f() { time.Sleep(1); time.NewTimer(1) }`, 2},
		{"renamed import", `package d; import tm "time"; func f() { _ = tm.Now() }`, 1},
		{"dot import", `package d; import . "time"; func f() { _ = Now() }`, 1},
		{"time types only", `package d; import "time"; func f(t time.Time) time.Time { return t.Add(time.Second) }`, 0},
		{"time.Unix", `package d; import "time"; func f() time.Time { return time.Unix(0, 0) }`, 0},
		{"method named Now", `package d; import "time"; type C interface{ Now() time.Time }; func f(c C) time.Time { return c.Now() }`, 0},
		{"local variable named time", `package d; import "time"; type C struct{}; func (C) Now() time.Time { return time.Time{} }; func f(time C) { time.Now() }`, 0},
		{"no time import", `package d; type t struct{}; func (t) Now() {}; var time t; func f() { time.Now() }`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "x.go", tt.src, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := clockUses(fset, f); len(got) != tt.want {
				t.Errorf("found %q, want %d uses", got, tt.want)
			}
		})
	}
}

func TestDocProblem(t *testing.T) {
	tests := []struct {
		name, pkg, src string
		ok             bool
	}{
		{"good", "envelope", "// Package envelope seals values under data keys.\npackage envelope\n", true},
		{"good, several lines", "wire", "// Package wire is the compact binary encoding\n// used in the log. It never panics.\npackage wire\n", true},
		{"good block comment", "x", "/*\nPackage x does the thing well.\n*/\npackage x\n", true},
		{"command", "main", "// Kmsbackup is the command line and the server.\npackage main\n", true},
		{"no comment", "x", "package x\n", false},
		{"detached comment", "x", "// Package x does the thing well.\n\npackage x\n", false},
		{"empty comment", "x", "//\npackage x\n", false},
		{"wrong name", "x", "// Package y does the thing well.\npackage x\n", false},
		{"no sentence", "x", "// Package x\npackage x\n", false},
		{"fragment without period", "x", "// Package x does things\npackage x\n", false},
		{"only a link", "x", "// Package x: see https://example.com/x.\npackage x\n", false},
		{"other package clause", "x", "// Package y does the thing well.\npackage y\n", false},
		{"command without sentence", "main", "// kmsbackup\npackage main\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problem := docProblem(tt.pkg, []byte(tt.src))
			if (problem == "") != tt.ok {
				t.Errorf("docProblem = %q, want ok=%v", problem, tt.ok)
			}
		})
	}
}
