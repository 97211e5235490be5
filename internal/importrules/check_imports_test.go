// Package importrules_test runs scripts/check-imports.sh on copies of the
// module with a wrong arrow added, and checks that the script catches it.
package importrules_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the module's root directory (this package is
// internal/importrules).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "check-imports.sh")); err != nil {
		t.Fatal(err)
	}
	return root
}

// copyModule copies the module's tracked files to a new directory.
func copyModule(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "tools/") {
			continue // tools/vaultdev is a module of its own
		}
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// checkImports runs the script in dir and returns its output and whether
// it passed.
func checkImports(t *testing.T, dir string) (string, bool) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(dir, "scripts", "check-imports.sh"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("run check-imports.sh: %v", err)
		}
	}
	return out.String(), err == nil
}

// The script passes on the module as it is (the harness works), and fails
// on each wrong arrow docs/architecture.md forbids.
func TestCheckImportsCatchesWrongArrows(t *testing.T) {
	root := repoRoot(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip(err)
	}
	t.Run("the module as it is", func(t *testing.T) {
		t.Parallel()
		if out, ok := checkImports(t, copyModule(t, root)); !ok {
			t.Fatalf("check-imports.sh fails on the unchanged module:\n%s", out)
		}
	})
	for _, tc := range []struct {
		name, file, src string
	}{
		// "The domain uses the standard library and golang.org/x only":
		// the script forbids three hosts (github.com, gopkg.in,
		// google.golang.org) instead of allowing golang.org/x only, so a
		// module from any other host passes. dario.cat/mergo is in the
		// module graph already (through the Vault client).
		{"the domain imports a third-party module from another host", "forgettable/wrong_arrow.go",
			"package forgettable\n\nimport _ \"dario.cat/mergo\"\n"},
		// The domain's behavioural suites are packages like any other
		// (not test files), imported by the adapters' tests; the script
		// exempts every package whose path ends in "test", so a suite
		// may import an adapter (or the API) unchecked.
		{"a domain's behavioural suite imports an adapter", "keystore/keystoretest/wrong_arrow.go",
			"package keystoretest\n\nimport _ \"github.com/lethe-store/lethe/keystore/vault\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyModule(t, root)
			if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.src), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, ok := checkImports(t, dir); ok {
				t.Errorf("check-imports.sh passes with %s (%s):\n%s", tc.file, strings.TrimSpace(tc.src), out)
			}
		})
	}
}
