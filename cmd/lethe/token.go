package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/lethe-store/lethe/api"
	apipg "github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/api/wire"
)

const tokenUsage = `Usage: lethe token COMMAND [flags]

API tokens authenticate requests to the HTTP API. Lethe stores only their
hashes: a token's secret is printed once, when it is created.
  create --role R1,R2 [--name NAME]   create a token; prints its id and secret
  list                                print every token (never a secret)
  revoke ID                           revoke a token, at once in every server

create and revoke are recorded in the audit trail under --actor
($LETHE_ACTOR, default cli:$USER).

Roles: %s.
`

func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, tokenUsage, strings.Join(wire.Roles, ", "))
		return errors.New("no token command given")
	}
	cmd := args[0]
	if cmd != "create" && cmd != "list" && cmd != "revoke" {
		fmt.Fprintf(stderr, tokenUsage, strings.Join(wire.Roles, ", "))
		return fmt.Errorf("unknown token command %q", cmd)
	}
	var c config
	var roles, name, actor string
	f := newFlagSet("token "+cmd, getenv, stderr)
	c.bindDatabase(f)
	if cmd != "list" {
		f.string(&actor, "actor", "LETHE_ACTOR", defaultActor(getenv), "who does this, for the audit trail")
	}
	if cmd == "create" {
		f.fs.StringVar(&roles, "role", "", "comma-separated roles: "+strings.Join(wire.Roles, ", "))
		f.fs.StringVar(&name, "name", "", "what the token is for (no personal data here)")
	}
	var operands []string
	if cmd == "revoke" {
		var err error
		if operands, err = parseWithOperands(f, args[1:]); err != nil {
			return err
		}
	} else if err := f.parse(args[1:]); err != nil {
		return err
	}

	// Check what can be checked before connecting.
	var secret string
	var nt api.NewToken
	switch cmd {
	case "create":
		var err error
		if secret, nt, err = api.GenerateToken(name, splitList(roles), actor); err != nil {
			return err
		}
	case "revoke":
		if len(operands) != 1 {
			return errors.New("revoke needs one token id: lethe token revoke ID")
		}
	}

	pool, err := openPool(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	tokens := apipg.NewTokens(pool)
	switch cmd {
	case "create":
		tok, err := tokens.CreateToken(ctx, nt)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "id\t%s\n", tok.ID)
		fmt.Fprintf(tw, "token\t%s\n", secret)
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "Keep the token now: Lethe stores only its hash and cannot show it again.")
		return nil
	case "list":
		list, err := tokens.ListTokens(ctx)
		if err != nil {
			return err
		}
		return printTokens(stdout, list)
	default: // revoke
		if err := tokens.RevokeToken(ctx, operands[0], actor, ""); err != nil {
			if errors.Is(err, api.ErrTokenNotFound) {
				return fmt.Errorf("token %s: %w", strconv.Quote(operands[0]), api.ErrTokenNotFound)
			}
			return err
		}
		fmt.Fprintf(stdout, "token %s revoked\n", operands[0])
		return nil
	}
}

// parseWithOperands parses flags that may come before, between or after
// the operands, and returns the operands.
func parseWithOperands(f *envFlags, args []string) ([]string, error) {
	var operands []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, err
		}
		if f.fs.NArg() == 0 {
			break
		}
		operands = append(operands, f.fs.Arg(0))
		args = f.fs.Args()[1:]
	}
	return operands, f.err
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// printTokens writes tokens as a table. Names are free text: any with
// control characters are quoted, so that none can break or forge a line.
func printTokens(w io.Writer, tokens []wire.Token) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLES\tCREATED\tREVOKED")
	for _, t := range tokens {
		name := t.Name
		switch {
		case name == "":
			name = "-"
		case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) && r != ' ' }):
			name = strconv.Quote(name)
		}
		revoked := "-"
		if t.RevokedAt != nil {
			revoked = t.RevokedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, name, strings.Join(t.Roles, ","), t.CreatedAt.UTC().Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}
