// Command lethe-bench measures Lethe against a raw pgx baseline run in the
// same process, on the same PostgreSQL, in the same run: `make bench`. The
// HTTP API's appends, driven by a load generator (vegeta) over loopback TCP,
// are measured against the same appends through the Go API.
//
// Every figure is printed as a rate and as a ratio to its baseline, and
// written with the machine's description to bench-results.json, so that runs
// can be compared. Unless -database-url is given, it starts a private
// PostgreSQL with durability defaults (fsync on) and removes it afterwards.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/internal/devenv"
	"github.com/lethe-store/lethe/migrations"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "lethe-bench:", err)
			os.Exit(1)
		}
	}
}

// options are the command's flags.
type options struct {
	databaseURL string
	out         string
	only        *regexp.Regexp
	duration    time.Duration
	scanEvents  int
	quick       bool
	cpuProfile  string
}

// figure is one measured result.
type figure struct {
	Name         string  `json:"name"`
	Value        float64 `json:"value"`
	Unit         string  `json:"unit"`
	BaselineName string  `json:"baseline_name,omitempty"`
	Baseline     float64 `json:"baseline,omitempty"`
	Ratio        float64 `json:"ratio,omitempty"`
	// Target is the ratio the issue asks for, if any.
	Target float64 `json:"target,omitempty"`
	Note   string  `json:"note,omitempty"`
}

// results is what bench-results.json holds.
type results struct {
	Time    time.Time `json:"time"`
	Machine machine   `json:"machine"`
	Figures []figure  `json:"figures"`
}

type machine struct {
	CPUs       int    `json:"cpus"`
	CPU        string `json:"cpu"`
	Memory     string `json:"memory"`
	GoVersion  string `json:"go"`
	PostgreSQL string `json:"postgresql"`
	Fsync      string `json:"fsync"`
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == auditChildCommand {
		return auditChild(ctx, stdout)
	}
	fs := flag.NewFlagSet("lethe-bench", flag.ContinueOnError)
	var o options
	var only string
	fs.StringVar(&o.databaseURL, "database-url", os.Getenv("LETHE_BENCH_DATABASE_URL"), "PostgreSQL server URL to use instead of a private one ($LETHE_BENCH_DATABASE_URL); a database is created on it")
	fs.StringVar(&o.out, "out", "bench-results.json", "where to write the figures as JSON")
	fs.StringVar(&only, "run", "", "only run benchmarks whose name matches this regular expression")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "how long each throughput figure is measured")
	fs.IntVar(&o.scanEvents, "scan-events", 1_000_000, "events in the $all scan")
	fs.BoolVar(&o.quick, "quick", false, "small sizes and short runs: a smoke test, not figures to keep")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the benchmark process to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.quick {
		o.duration, o.scanEvents = 300*time.Millisecond, 20_000
	}
	var err error
	if o.only, err = regexp.Compile(only); err != nil {
		return fmt.Errorf("-run: %w", err)
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	serverURL := o.databaseURL
	if serverURL == "" {
		pg, dir, err := startPostgres(ctx, stdout)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = pg.Stop(sctx)
			_ = os.RemoveAll(dir)
		}()
		serverURL = pg.URL("postgres")
	}
	res := results{Time: time.Now().UTC()}
	for i, s := range suites() {
		if !o.only.MatchString(s.name) {
			continue
		}
		// Every suite gets a fresh database: figures must not depend on
		// what an earlier suite left behind.
		pool, cleanup, err := benchDatabase(ctx, serverURL)
		if err != nil {
			return err
		}
		if i == 0 || res.Machine.CPUs == 0 {
			res.Machine = describeMachine(ctx, pool)
			fmt.Fprintf(stdout, "machine: %d CPUs (%s), %s memory, %s, PostgreSQL %s, fsync=%s\n\n",
				res.Machine.CPUs, res.Machine.CPU, res.Machine.Memory, res.Machine.GoVersion, res.Machine.PostgreSQL, res.Machine.Fsync)
		}
		fmt.Fprintf(stdout, "==> %s\n", s.name)
		figs, err := s.run(ctx, &bench{pool: pool, opts: o, out: stdout})
		cleanup()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		for _, f := range figs {
			printFigure(stdout, f)
		}
		res.Figures = append(res.Figures, figs...)
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %d figures to %s\n", len(res.Figures), o.out)
	return nil
}

func printFigure(w io.Writer, f figure) {
	line := fmt.Sprintf("  %-34s %12.0f %-9s", f.Name, f.Value, f.Unit)
	if f.Value < 100 {
		line = fmt.Sprintf("  %-34s %12.2f %-9s", f.Name, f.Value, f.Unit)
	}
	if f.BaselineName != "" {
		format := "  vs %-26s %12.0f  ratio %.2f"
		if f.Baseline < 100 {
			format = "  vs %-26s %12.2f  ratio %.2f"
		}
		line += fmt.Sprintf(format, f.BaselineName, f.Baseline, f.Ratio)
		if f.Target > 0 {
			verdict := "meets"
			if f.Ratio < f.Target {
				verdict = "BELOW"
			}
			line += fmt.Sprintf("  (target >= %.2f: %s)", f.Target, verdict)
		}
	}
	if f.Note != "" {
		line += "  " + f.Note
	}
	fmt.Fprintln(w, line)
}

func startPostgres(ctx context.Context, stdout io.Writer) (*devenv.Postgres, string, error) {
	dir, err := os.MkdirTemp("", "lethe-bench-pg-")
	if err != nil {
		return nil, "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, "", err
	}
	fmt.Fprintln(stdout, "==> starting a private PostgreSQL (durability defaults: fsync on)")
	pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: dir, Fsync: true, Log: stdout})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", err
	}
	return pg, dir, nil
}

// benchDatabase creates a fresh database on the server, migrates it and
// returns a pool on it.
func benchDatabase(ctx context.Context, serverURL string) (*pgxpool.Pool, func(), error) {
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	name := fmt.Sprintf("lethe_bench_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		return nil, nil, err
	}
	cfg, err := pgxpool.ParseConfig(serverURL)
	if err != nil {
		return nil, nil, err
	}
	cfg.ConnConfig.Database = name
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	_, _, err = migrations.Migrate(ctx, conn.Conn())
	conn.Release()
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		pool.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.Exec(cctx, "DROP DATABASE "+name+" WITH (FORCE)")
		admin.Close(cctx)
	}
	return pool, cleanup, nil
}

func describeMachine(ctx context.Context, pool *pgxpool.Pool) machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if _, v, ok := strings.Cut(line, ":"); ok {
					m.CPU = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	_ = pool.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync')`).Scan(&m.PostgreSQL, &m.Fsync)
	return m
}
