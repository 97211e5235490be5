package api

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"gopkg.in/yaml.v3"
)

// The reference docs (docs/openapi.yaml, docs/api.md) must describe the
// router exactly: every route and method it serves, nothing it does not,
// and the same problem types. Routes are read line by line: path keys at
// 2 spaces under "paths:", methods at 4; TestOpenAPIIsValidYAML parses the
// whole file.

// repoFile returns the path of a file relative to the repository root:
// the nearest directory above the test's working directory (api/) that
// holds go.mod.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, filepath.FromSlash(rel))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the working directory: cannot find %s", rel)
		}
		dir = parent
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the API reference: %v", err)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return lines
}

var (
	openapiPathKey   = regexp.MustCompile(`^  (?:"(/[^"]*)"|'(/[^']*)'|(/\S*)):\s*(?:#.*)?$`)
	openapiMethodKey = regexp.MustCompile(`^    (get|put|post|delete|patch|head|options|trace):\s*(?:#.*)?$`)
)

// openapiOperations returns the methods of each path under the top-level
// "paths:" of an OpenAPI document in block style.
func openapiOperations(t *testing.T, path string) map[string][]string {
	t.Helper()
	ops := map[string][]string{}
	inPaths, sawPaths := false, false
	current := ""
	for i, line := range readLines(t, path) {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if indent == 0 {
			if strings.HasPrefix(line, "\t") {
				t.Fatalf("%s:%d: tab indentation: this reader wants spaces", path, n)
			}
			key, _, _ := strings.Cut(line, ":")
			if inPaths && key != "paths" {
				inPaths = false
			}
			if key == "paths" {
				if sawPaths {
					t.Fatalf("%s:%d: a second paths: section", path, n)
				}
				if strings.TrimSpace(strings.TrimPrefix(line, "paths:")) != "" {
					t.Fatalf("%s:%d: want paths: in block style (path keys on their own lines)", path, n)
				}
				inPaths, sawPaths = true, true
			}
			continue
		}
		if !inPaths {
			continue
		}
		if strings.HasPrefix(strings.TrimLeft(line, " "), "\t") {
			t.Fatalf("%s:%d: tab indentation: this reader wants spaces", path, n)
		}
		switch indent {
		case 2:
			m := openapiPathKey.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("%s:%d: want a path key (\"  /v1/...:\") at 2 spaces under paths:, got %q", path, n, line)
			}
			current = m[1] + m[2] + m[3]
			if _, dup := ops[current]; dup {
				t.Fatalf("%s:%d: path %s is listed twice", path, n, current)
			}
			ops[current] = []string{}
		case 4:
			if current == "" {
				t.Fatalf("%s:%d: a key at 4 spaces before any path key", path, n)
			}
			if strings.HasPrefix(trimmed, "$ref:") {
				t.Fatalf("%s:%d: path %s is a $ref: write its operations inline, so that they can be checked", path, n, current)
			}
			if m := openapiMethodKey.FindStringSubmatch(line); m != nil {
				method := strings.ToUpper(m[1])
				if slices.Contains(ops[current], method) {
					t.Fatalf("%s:%d: %s %s is listed twice", path, n, method, current)
				}
				ops[current] = append(ops[current], method)
			}
		}
	}
	if !sawPaths {
		t.Fatalf("%s: no top-level paths: section", path)
	}
	if len(ops) == 0 {
		t.Fatalf("%s: found no path under paths: (is the reader out of step with the file's layout?)", path)
	}
	for p, ms := range ops {
		if len(ms) == 0 {
			t.Errorf("%s: path %s has no operation", path, p)
		}
	}
	return ops
}

// normalizeRoute turns a chi pattern into an OpenAPI path: regular
// expressions are dropped from parameters ("{id:[0-9]+}" is "{id}").
func normalizeRoute(route string) string {
	var b strings.Builder
	depth := 0
	skipping := false
	for _, c := range route {
		switch {
		case c == '{':
			depth++
			if depth == 1 {
				skipping = false
				b.WriteRune(c)
				continue
			}
		case c == '}':
			depth--
			if depth == 0 {
				skipping = false
				b.WriteRune(c)
				continue
			}
		case c == ':' && depth == 1:
			skipping = true
		}
		if !skipping {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// anyMethodMarkers are methods that only a route registered for every
// method (Handle, Mount) reports.
var anyMethodMarkers = []string{http.MethodConnect, http.MethodTrace}

// routerOperations walks the router NewHandler builds. A route registered
// for every method (r.Handle) is in anyMethod, with no methods listed.
func routerOperations(t *testing.T) (ops map[string][]string, anyMethod map[string]bool) {
	t.Helper()
	var h any = NewHandler(Options{})
	routes, ok := h.(chi.Routes)
	if !ok {
		t.Fatalf("NewHandler returned %T: want a chi router (chi.Routes) to walk", h)
	}
	seen := map[string][]string{}
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if route == "/*" || strings.HasSuffix(route, "/*") {
			return nil // chi's catch-alls (Mount, NotFound)
		}
		route = normalizeRoute(route)
		if !slices.Contains(seen[route], method) {
			seen[route] = append(seen[route], method)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the router: %v", err)
	}
	ops, anyMethod = map[string][]string{}, map[string]bool{}
	for route, methods := range seen {
		if slices.ContainsFunc(anyMethodMarkers, func(m string) bool { return slices.Contains(methods, m) }) {
			anyMethod[route] = true
			continue
		}
		for _, m := range methods {
			if m == http.MethodHead || m == http.MethodOptions {
				continue
			}
			ops[route] = append(ops[route], m)
		}
	}
	if len(ops)+len(anyMethod) == 0 {
		t.Fatal("the router has no routes")
	}
	return ops, anyMethod
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	spec := repoFile(t, "docs/openapi.yaml")
	documented := openapiOperations(t, spec)
	served, anyMethod := routerOperations(t)

	var problems []string
	for route, methods := range served {
		for _, m := range methods {
			if !slices.Contains(documented[route], m) {
				problems = append(problems, fmt.Sprintf("the router serves %s %s; docs/openapi.yaml does not document it", m, route))
			}
		}
	}
	for route := range anyMethod {
		if len(documented[route]) == 0 {
			problems = append(problems, fmt.Sprintf("the router serves %s (every method); docs/openapi.yaml does not document it", route))
		}
	}
	for route, methods := range documented {
		if anyMethod[route] {
			continue
		}
		for _, m := range methods {
			if m == http.MethodHead || m == http.MethodOptions {
				continue
			}
			if !slices.Contains(served[route], m) {
				problems = append(problems, fmt.Sprintf("docs/openapi.yaml documents %s %s; the router has no such route (check the path and its parameter names)", m, route))
			}
		}
	}
	slices.Sort(problems)
	for _, p := range problems {
		t.Error(p)
	}
	if t.Failed() {
		t.Logf("documented: %d paths; served: %d paths and %d any-method routes", len(documented), len(served), len(anyMethod))
	}
}

// apiMDProblems returns the problem types of the table under the
// "Problem types" heading of docs/api.md, with their statuses.
func apiMDProblems(t *testing.T, path string) map[string]int {
	t.Helper()
	name := regexp.MustCompile("^`([a-z0-9]+(?:-[a-z0-9]+)*)`$")
	out := map[string]int{}
	level := 0 // the heading level of the section, once found
	for i, line := range readLines(t, path) {
		if strings.HasPrefix(line, "#") {
			hashes := len(line) - len(strings.TrimLeft(line, "#"))
			title := strings.TrimSpace(line[hashes:])
			switch {
			case level == 0 && strings.EqualFold(title, "Problem types"):
				level = hashes
				continue
			case level > 0 && hashes <= level:
				level = -1 // the section ended
			}
		}
		if level <= 0 || !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) < 2 {
			continue
		}
		m := name.FindStringSubmatch(strings.TrimSpace(cells[0]))
		if m == nil {
			continue // the header and separator rows
		}
		status, err := strconv.Atoi(strings.TrimSpace(cells[1]))
		if err != nil {
			t.Fatalf("%s:%d: problem %s: want its status in the second column, got %q", path, i+1, m[1], cells[1])
		}
		if _, dup := out[m[1]]; dup {
			t.Errorf("%s:%d: problem %s is listed twice", path, i+1, m[1])
		}
		out[m[1]] = status
	}
	if level == 0 {
		t.Fatalf("%s: no \"Problem types\" heading", path)
	}
	if len(out) == 0 {
		t.Fatalf("%s: found no problem type in the table under \"Problem types\" (want rows like | `invalid-request` | 400 | ... |)", path)
	}
	return out
}

var openapiProblemType = regexp.MustCompile(`^(\s*)type:\s*["']?https://lethe\.dev/problems/([a-z0-9-]+)["']?\s*$`)
var yamlStatus = regexp.MustCompile(`^\s*status:\s*(\d+)\s*$`)

// openapiProblems returns the problem types of docs/openapi.yaml's
// example documents ("type: https://lethe.dev/problems/<name>"), with the
// statuses given beside them.
func openapiProblems(t *testing.T, path string) map[string][]int {
	t.Helper()
	lines := readLines(t, path)
	out := map[string][]int{}
	for i, line := range lines {
		m := openapiProblemType.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent, name := len(m[1]), m[2]
		if _, ok := out[name]; !ok {
			out[name] = []int{}
		}
		// The status is a sibling key: same indentation, before the mapping ends.
		for dir := -1; dir <= 1; dir += 2 {
			for j := i + dir; j >= 0 && j < len(lines); j += dir {
				l := lines[j]
				if strings.TrimSpace(l) == "" {
					continue
				}
				ind := len(l) - len(strings.TrimLeft(l, " "))
				if ind < indent || (ind == indent && strings.HasPrefix(strings.TrimSpace(l), "- ")) {
					break
				}
				if ind != indent {
					continue
				}
				if s := yamlStatus.FindStringSubmatch(l); s != nil {
					st, _ := strconv.Atoi(s[1])
					if !slices.Contains(out[name], st) {
						out[name] = append(out[name], st)
					}
				}
				if strings.HasPrefix(strings.TrimSpace(l), "- ") {
					break // the first key of a list item: the mapping starts here
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: found no https://lethe.dev/problems/<name> type", path)
	}
	return out
}

func TestProblemTypesDocumented(t *testing.T) {
	table := apiMDProblems(t, repoFile(t, "docs/api.md"))
	spec := openapiProblems(t, repoFile(t, "docs/openapi.yaml"))
	for name, status := range table {
		statuses, ok := spec[name]
		switch {
		case !ok:
			t.Errorf("problem %s: listed in docs/api.md, missing from docs/openapi.yaml", name)
		case len(statuses) == 0:
			t.Errorf("problem %s: docs/openapi.yaml has no example with its status", name)
		case !slices.Contains(statuses, status):
			t.Errorf("problem %s: status %d in docs/api.md, %v in docs/openapi.yaml", name, status, statuses)
		}
	}
	for name := range spec {
		if _, ok := table[name]; !ok {
			t.Errorf("problem %s: in docs/openapi.yaml, missing from docs/api.md's problem table", name)
		}
	}
}

// The problem types the server writes are the documented ones: every
// name passed to (*Server).problem or appended to ProblemTypeBase in the
// package's source is in docs/api.md's table, with the same status where
// the call states it.
func TestProblemTypesInCodeDocumented(t *testing.T) {
	table := apiMDProblems(t, repoFile(t, "docs/api.md"))
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	found := 0
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", file, err)
		}
		check := func(pos token.Pos, name string, status int) {
			found++
			want, ok := table[name]
			switch {
			case !ok:
				t.Errorf("%s: problem type %q is not in docs/api.md's problem table (nor, then, in docs/openapi.yaml)", fset.Position(pos), name)
			case status != 0 && status != want:
				t.Errorf("%s: problem type %q is written with status %d; docs/api.md says %d", fset.Position(pos), name, status, want)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				// s.problem(w, r, status, "name", detail)
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "problem" || len(n.Args) < 4 {
					return true
				}
				if name, ok := stringLit(n.Args[3]); ok {
					check(n.Args[3].Pos(), name, httpStatus(n.Args[2]))
				}
			case *ast.BinaryExpr:
				// ProblemTypeBase + "name"
				if id, ok := n.X.(*ast.Ident); ok && id.Name == "ProblemTypeBase" && n.Op == token.ADD {
					if name, ok := stringLit(n.Y); ok {
						check(n.Y.Pos(), name, 0)
					}
				}
			}
			return true
		})
	}
	if found == 0 {
		t.Fatal("found no problem type in the package's source: is the pattern out of date?")
	}
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// httpStatus resolves http.StatusXxx and integer literals; 0 if unknown.
func httpStatus(e ast.Expr) int {
	switch e := e.(type) {
	case *ast.BasicLit:
		n, _ := strconv.Atoi(e.Value)
		return n
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "http" {
			return httpStatusByName[e.Sel.Name]
		}
	}
	return 0
}

var httpStatusByName = map[string]int{
	"StatusBadRequest":            http.StatusBadRequest,
	"StatusUnauthorized":          http.StatusUnauthorized,
	"StatusForbidden":             http.StatusForbidden,
	"StatusNotFound":              http.StatusNotFound,
	"StatusMethodNotAllowed":      http.StatusMethodNotAllowed,
	"StatusConflict":              http.StatusConflict,
	"StatusRequestEntityTooLarge": http.StatusRequestEntityTooLarge,
	"StatusUnsupportedMediaType":  http.StatusUnsupportedMediaType,
	"StatusUnprocessableEntity":   http.StatusUnprocessableEntity,
	"StatusInternalServerError":   http.StatusInternalServerError,
	"StatusServiceUnavailable":    http.StatusServiceUnavailable,
}

// docs/openapi.yaml parses as YAML into an OpenAPI document, with every
// $ref pointing at a component that exists: the line-based checks above
// would read a file no tool can load.
func TestOpenAPIIsValidYAML(t *testing.T) {
	spec, err := os.ReadFile(repoFile(t, "docs/openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(spec, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml is not valid YAML: %v", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi: %v, want 3.x", doc["openapi"])
	}
	var refs []string
	var walk func(any)
	walk = func(v any) {
		switch c := v.(type) {
		case map[string]any:
			for k, x := range c {
				if s, ok := x.(string); ok && k == "$ref" {
					refs = append(refs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range c {
				walk(x)
			}
		}
	}
	walk(doc)
	if len(refs) == 0 {
		t.Fatal("no $ref in docs/openapi.yaml")
	}
	for _, ref := range refs {
		var node any = doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node = m[part]
		}
		if node == nil {
			t.Errorf("$ref %s points at nothing", ref)
		}
	}
}
