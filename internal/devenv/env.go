package devenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ModulePath is the module path of Lethe's go.mod, used by RepoRoot to
// recognise the repository.
const ModulePath = "github.com/lethe-store/lethe"

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another
// process may take it before the caller binds it; the servers started here
// fail clearly if that happens.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PortFree reports whether TCP port can be bound on 127.0.0.1 right now.
func PortFree(port int) bool {
	if port <= 0 || port > 65535 {
		return false
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// RepoRoot returns the root folder of the Lethe repository: the nearest
// folder, from the working directory upwards, whose go.mod declares module
// github.com/lethe-store/lethe.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for dir := wd; ; {
		if modulePath(filepath.Join(dir, "go.mod")) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repository root: no go.mod for module %s in %s or above", ModulePath, wd)
		}
		dir = parent
	}
}

// modulePath returns the module path declared in the go.mod file at path,
// or "" if the file cannot be read or declares none.
func modulePath(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		rest = strings.TrimSpace(rest)
		if unq, err := strconv.Unquote(rest); err == nil {
			rest = unq
		}
		return rest
	}
	return ""
}

// VaultBinary returns the Vault program to run: $VAULT_BIN if set, else
// repoRoot/bin/vault if it is an executable file. Otherwise it returns an
// error telling the user how to get one.
func VaultBinary(repoRoot string) (string, error) {
	if bin := os.Getenv("VAULT_BIN"); bin != "" {
		if err := checkExecutable(bin); err != nil {
			return "", fmt.Errorf("VAULT_BIN: %w", err)
		}
		return bin, nil
	}
	if repoRoot != "" {
		bin := filepath.Join(repoRoot, "bin", "vault")
		if checkExecutable(bin) == nil {
			return bin, nil
		}
	}
	return "", errors.New("no Vault binary: run `make vault` (first build ~20 min) or set VAULT_BIN to an existing vault program")
}

// checkExecutable returns nil if path is a regular file with an execute bit.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}
