package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PostgresOptions configures StartPostgres.
type PostgresOptions struct {
	// Dir is the cluster folder (required). The data directory is Dir/data,
	// created with initdb if absent and reused if present; the server log is
	// Dir/server.log and the Unix socket is made in Dir.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Fsync keeps PostgreSQL's durability settings. When false (for tests)
	// the server runs with fsync, synchronous_commit and full_page_writes off:
	// much faster, and a machine crash may corrupt the cluster.
	Fsync bool
	// MaxConnections is the server's max_connections; 0 means 200.
	MaxConnections int
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Postgres is a PostgreSQL server started by StartPostgres. Its superuser is
// "root", trusted without a password on loopback.
type Postgres struct {
	binDir  string
	major   string
	dir     string
	dataDir string
	port    int
	log     io.Writer
	// runuser is the path of runuser when the server must run as the
	// postgres user (the caller is root), else "".
	runuser string

	mu      sync.Mutex
	stopped bool
}

// The PostgreSQL user that runs the server when the caller is root.
const postgresUser = "postgres"

// startTimeout is how long pg_ctl waits for the server to accept connections.
const startTimeout = 60 * time.Second

// StartPostgres starts a PostgreSQL server on 127.0.0.1 with its cluster in
// opts.Dir, creating the cluster first if needed. A server left running on
// the same cluster by an earlier run is stopped first. The server keeps
// running (it is daemonised) until Stop is called.
//
// When the caller is root, the server runs as the postgres user: opts.Dir is
// given to that user, and every folder above it must be enterable by that
// user, or StartPostgres fails and says which folder is not.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	p, err := startPostgres(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	return p, nil
}

func startPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	if opts.Dir == "" {
		return nil, errors.New("no cluster folder given (PostgresOptions.Dir)")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	// pg_ctl hands paths to /bin/sh inside double quotes.
	if strings.ContainsAny(dir, "\"$`\\\n") {
		return nil, fmt.Errorf("cluster folder %q: use a path without quotes, $, backquotes or backslashes", dir)
	}
	if opts.MaxConnections == 0 {
		opts.MaxConnections = 200
	}
	p := &Postgres{dir: dir, dataDir: filepath.Join(dir, "data"), log: opts.Log}
	if p.log == nil {
		p.log = io.Discard
	}

	dataVersion := clusterVersion(p.dataDir)
	if p.binDir, err = postgresBinDir(ctx, dataVersion); err != nil {
		return nil, err
	}
	if p.major, err = serverMajor(ctx, p.binDir); err != nil {
		return nil, err
	}
	if dataVersion != "" && dataVersion != p.major {
		return nil, fmt.Errorf("the cluster in %s was made by PostgreSQL %s but the server programs in %s are PostgreSQL %s: install PostgreSQL %s, or remove %s to start over (its data is lost)",
			p.dataDir, dataVersion, p.binDir, p.major, dataVersion, dir)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := p.prepareRoot(ctx); err != nil {
			return nil, err
		}
	}

	if dataVersion == "" {
		if err := p.initdb(ctx, opts.Fsync); err != nil {
			return nil, err
		}
	}
	if err := p.stopLeftover(ctx); err != nil {
		return nil, err
	}

	// A port picked here may be taken by someone else before the server binds
	// it; then pick another.
	for attempt := 1; ; attempt++ {
		p.port = opts.Port
		if p.port == 0 {
			if p.port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		err := p.start(ctx, opts)
		if err == nil {
			return p, nil
		}
		if opts.Port != 0 || attempt == 3 || !errors.Is(err, errAddrInUse) {
			return nil, err
		}
		fmt.Fprintf(p.log, "port %d was taken meanwhile; trying another\n", p.port)
	}
}

// errAddrInUse marks a start that failed because the port was taken.
var errAddrInUse = errors.New("address already in use")

// prepareRoot gives the cluster folder to the postgres user and checks that
// the user can reach it.
func (p *Postgres) prepareRoot(ctx context.Context) error {
	u, err := user.Lookup(postgresUser)
	if err != nil {
		return fmt.Errorf("PostgreSQL refuses to run as root and there is no %q user to run it as (%v): install the postgresql package, which creates it, or run as a non-root user", postgresUser, err)
	}
	if p.runuser, err = exec.LookPath("runuser"); err != nil {
		return fmt.Errorf("PostgreSQL refuses to run as root and runuser (util-linux) is missing: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(p.dir, uid, gid); err != nil {
		return err
	}
	return CheckPostgresAccess(ctx, p.dir)
}

// CheckPostgresAccess checks that the postgres user can enter every folder
// above dir, as a cluster in dir needs when the caller is root (the server
// then runs as that user). It returns nil when the caller is not root. The
// error names the first folder that is closed to the user.
func CheckPostgresAccess(ctx context.Context, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	runuser, err := exec.LookPath("runuser")
	if err != nil {
		return fmt.Errorf("PostgreSQL refuses to run as root and runuser (util-linux) is missing: %w", err)
	}
	canEnter := func(folder string) (bool, error) {
		err := exec.CommandContext(ctx, runuser, "-u", postgresUser, "--", "test", "-x", folder).Run()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return false, nil
		}
		return err == nil, err
	}
	// The nearest existing folder above dir: folders that do not exist yet
	// will be made with the usual 0755 by MkdirAll.
	parent := filepath.Dir(dir)
	for {
		if _, err := os.Stat(parent); err == nil || filepath.Dir(parent) == parent {
			break
		}
		parent = filepath.Dir(parent)
	}
	ok, err := canEnter(parent)
	if err != nil {
		return fmt.Errorf("check that user %s can reach %s: %w", postgresUser, dir, err)
	}
	if ok {
		return nil
	}
	// Name the first closed folder from the top.
	closed := parent
	for f := parent; ; f = filepath.Dir(f) {
		if ok, err := canEnter(f); err == nil && !ok {
			closed = f
		}
		if filepath.Dir(f) == f {
			break
		}
	}
	return fmt.Errorf("PostgreSQL runs as user %s (it refuses to run as root), and that user cannot enter %s to reach %s: put the cluster in a folder under /tmp, or open the folder with `chmod o+x %s`",
		postgresUser, closed, dir, closed)
}

// PostgresBinDir finds the folder of the newest PostgreSQL server programs
// installed (initdb, pg_ctl, postgres).
func PostgresBinDir(ctx context.Context) (string, error) { return postgresBinDir(ctx, "") }

// postgresBinDir finds the folder of PostgreSQL's server programs. If the
// existing cluster was made by a PostgreSQL version that is installed, that
// version's programs are used.
func postgresBinDir(ctx context.Context, want string) (string, error) {
	hasInitdb := func(dir string) bool { return checkExecutable(filepath.Join(dir, "initdb")) == nil }
	if want != "" {
		if dir := filepath.Join("/usr/lib/postgresql", want, "bin"); hasInitdb(dir) {
			return dir, nil
		}
	}
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
		if dir := strings.TrimSpace(string(out)); err == nil && hasInitdb(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest version first: compare "15" and "9.6" as numbers.
	version := func(dir string) []int {
		var v []int
		for _, part := range strings.Split(filepath.Base(filepath.Dir(dir)), ".") {
			n, _ := strconv.Atoi(part)
			v = append(v, n)
		}
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return slices.Compare(version(b), version(a)) })
	for _, dir := range dirs {
		if hasInitdb(dir) {
			return dir, nil
		}
	}
	return "", errors.New("no PostgreSQL server programs (initdb, pg_ctl) found via pg_config or in /usr/lib/postgresql/*/bin: install them with `apt-get update && apt-get install -y postgresql`")
}

// serverMajor returns the major version of the server programs in binDir,
// such as "15".
func serverMajor(ctx context.Context, binDir string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", filepath.Join(binDir, "postgres"), err)
	}
	// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
	_, rest, ok := strings.Cut(string(out), "(PostgreSQL) ")
	if !ok {
		return "", fmt.Errorf("unexpected output of postgres --version: %q", out)
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end <= 0 {
		return "", fmt.Errorf("unexpected output of postgres --version: %q", out)
	}
	return rest[:end], nil
}

// clusterVersion returns the major version recorded in a data directory,
// or "" if there is no cluster.
func clusterVersion(dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// command returns a command running one of PostgreSQL's programs, as the
// postgres user when the caller is root.
func (p *Postgres) command(ctx context.Context, program string, args ...string) *exec.Cmd {
	path := filepath.Join(p.binDir, program)
	var cmd *exec.Cmd
	if p.runuser != "" {
		cmd = exec.CommandContext(ctx, p.runuser, append([]string{"-u", postgresUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = p.dir
	cmd.Env = envWithout(os.Environ(), "PG")
	return cmd
}

// run runs one of PostgreSQL's programs and returns its output.
func (p *Postgres) run(ctx context.Context, program string, args ...string) (string, error) {
	out, err := p.command(ctx, program, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", program, strings.Join(args, " "), err, indent(string(out)))
	}
	return string(out), nil
}

func (p *Postgres) initdb(ctx context.Context, fsync bool) error {
	if entries, err := os.ReadDir(p.dataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty but holds no PostgreSQL cluster (no PG_VERSION file): remove it to start over", p.dataDir)
	}
	fmt.Fprintf(p.log, "creating a PostgreSQL %s cluster in %s\n", p.major, p.dataDir)
	args := []string{"-D", p.dataDir, "-U", "root", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"}
	if !fsync {
		args = append(args, "--no-sync")
	}
	_, err := p.run(ctx, "initdb", args...)
	return err
}

// stopLeftover deals with a postmaster.pid left by an earlier run: a server
// still running on this cluster is stopped; a pid file of a dead server, or
// one whose process id now belongs to another program, is removed (the
// server would refuse to start if that process id is alive).
func (p *Postgres) stopLeftover(ctx context.Context) error {
	pidFile := filepath.Join(p.dataDir, "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		fmt.Fprintf(p.log, "removing an unreadable %s\n", pidFile)
		return os.Remove(pidFile)
	}
	if !isPostmasterOf(pid, p.dataDir) {
		fmt.Fprintf(p.log, "removing the stale %s (pid %d is no server of this cluster)\n", pidFile, pid)
		if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	fmt.Fprintf(p.log, "stopping the PostgreSQL server left running on %s (pid %d)\n", p.dataDir, pid)
	_, err = p.run(ctx, "pg_ctl", "-D", p.dataDir, "-m", "fast", "-w", "-t", "60", "stop")
	return err
}

// isPostmasterOf reports whether process pid is alive and is a PostgreSQL
// server whose working directory is dataDir (the postmaster works in its
// data directory).
func isPostmasterOf(pid int, dataDir string) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		// No /proc (not Linux): trust that a live pid is the server, as
		// pg_ctl does.
		return true
	}
	if strings.TrimSpace(string(comm)) != "postgres" {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true // not ours to inspect; it is a postgres
	}
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		want = dataDir
	}
	return cwd == want
}

// start runs pg_ctl start and waits until the server accepts connections.
func (p *Postgres) start(ctx context.Context, opts PostgresOptions) error {
	logFile := filepath.Join(p.dir, "server.log")
	var logStart int64
	if fi, err := os.Stat(logFile); err == nil {
		logStart = fi.Size()
	}
	fmt.Fprintf(p.log, "starting PostgreSQL %s on 127.0.0.1:%d (data in %s)\n", p.major, p.port, p.dataDir)

	// Unix socket paths are limited to 107 bytes; with a longer folder
	// the server listens on TCP only.
	socketDir := p.dir
	if len(socketDir)+len("/.s.PGSQL.65535") > 107 {
		socketDir = ""
	}
	// pg_ctl passes -o to /bin/sh.
	o := []string{
		"-c listen_addresses=127.0.0.1",
		"-p " + strconv.Itoa(p.port),
		"-k " + shellQuote(socketDir),
		"-c max_connections=" + strconv.Itoa(opts.MaxConnections),
	}
	if !opts.Fsync {
		o = append(o, "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
	}
	_, err := p.run(ctx, "pg_ctl", "-D", p.dataDir, "-l", logFile, "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)),
		"-o", strings.Join(o, " "), "start")
	if err == nil {
		return nil
	}
	// A server that did not come up in time may still be starting: do not
	// leave it behind.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, _ = p.run(stopCtx, "pg_ctl", "-D", p.dataDir, "-m", "immediate", "-w", "stop")

	serverLog := readFrom(logFile, logStart)
	if strings.Contains(serverLog, "Address already in use") {
		err = fmt.Errorf("%w: port %d: %w", errAddrInUse, p.port, err)
	}
	return fmt.Errorf("%w\nserver log (%s):\n%s", err, logFile, indent(lastLines(serverLog, 20)))
}

// Stop stops the server (pg_ctl stop -m fast) and waits until it has
// stopped. Stopping a stopped server does nothing.
func (p *Postgres) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	fmt.Fprintf(p.log, "stopping PostgreSQL on 127.0.0.1:%d\n", p.port)
	if _, err := p.run(ctx, "pg_ctl", "-D", p.dataDir, "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		// pg_ctl status exits with 3 when no server is running.
		var exitErr *exec.ExitError
		if serr := p.command(ctx, "pg_ctl", "-D", p.dataDir, "status").Run(); !errors.As(serr, &exitErr) || exitErr.ExitCode() != 3 {
			return fmt.Errorf("stop postgres: %w", err)
		}
	}
	p.stopped = true
	return nil
}

// URL returns the URL of a connection to database as the superuser root,
// for example postgres://root@127.0.0.1:5433/postgres?sslmode=disable.
func (p *Postgres) URL(database string) string {
	return fmt.Sprintf("postgres://root@127.0.0.1:%d/%s?sslmode=disable", p.port, pathEscape(database))
}

// Port returns the server's TCP port on 127.0.0.1.
func (p *Postgres) Port() int { return p.port }

// BinDir returns the folder of the PostgreSQL programs in use.
func (p *Postgres) BinDir() string { return p.binDir }

// Psql runs SQL with psql as the superuser in database and returns what it
// printed, unaligned and without headers (one row a line, columns separated
// by |). The first SQL error stops it and is returned.
func (p *Postgres) Psql(ctx context.Context, database, sql string) (string, error) {
	psql := filepath.Join(p.binDir, "psql")
	if checkExecutable(psql) != nil {
		var err error
		if psql, err = exec.LookPath("psql"); err != nil {
			return "", fmt.Errorf("psql: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", p.URL(database), "-c", sql)
	cmd.Env = envWithout(os.Environ(), "PG")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("psql: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSuffix(stdout.String(), "\n"), nil
}

// CreateDatabase creates database name unless it exists.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) error {
	out, err := p.Psql(ctx, "postgres", "SELECT 1 FROM pg_database WHERE datname = '"+strings.ReplaceAll(name, "'", "''")+"'")
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	if strings.TrimSpace(out) == "1" {
		return nil
	}
	if _, err := p.Psql(ctx, "postgres", `CREATE DATABASE "`+strings.ReplaceAll(name, `"`, `""`)+`"`); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	fmt.Fprintf(p.log, "created database %s\n", name)
	return nil
}

// pathEscape escapes a database name for a URL path.
func pathEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// envWithout returns env without the variables whose names start with
// prefix.
func envWithout(env []string, prefix string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, prefix) })
}

// readFrom returns the contents of a file from offset on ("" on error).
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(b)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// indent indents every line of s by four spaces, for output quoted in
// errors.
func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
