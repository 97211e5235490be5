package app_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readmeGoBlock returns README.md's Go example that contains marker.
func readmeGoBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(b), "```go\n")[1:] {
		code, _, _ := strings.Cut(block, "```")
		if strings.Contains(code, marker) {
			return code
		}
	}
	t.Fatalf("README.md has no Go example containing %q", marker)
	return ""
}

// README's crypto-shredding example is code a user of the library can
// write: it compiles (no variable declared twice with :=), and it uses no
// package of this module's internal/ tree, which the Go toolchain refuses
// to import from any other module.
func TestReadmeShreddingExampleIsUsableCode(t *testing.T) {
	t.Parallel()
	code := readmeGoBlock(t, `store.Append(ctx, "lead-12"`)
	src := "package example\n\nfunc example() {\n" + code + "\n}\n"
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "README.md", src, 0)
	if err != nil {
		t.Fatalf("README's example does not parse: %v", err)
	}
	// Type-check without imports: the packages' names are undefined, but
	// the declarations of the example's own variables are checked all the
	// same.
	var redeclared []string
	conf := types.Config{Error: func(err error) {
		if strings.Contains(err.Error(), "no new variables on left side of :=") {
			redeclared = append(redeclared, err.Error())
		}
	}}
	_, _ = conf.Check("example", fset, []*ast.File{f}, nil)
	for _, e := range redeclared {
		t.Errorf("README's crypto-shredding example does not compile: %s", e)
	}
	if strings.Contains(code, "internal/") || strings.Contains(code, "app.Open") {
		t.Errorf("README's crypto-shredding example opens internal/app, which no other module may import:\n%s", code)
	}
}
