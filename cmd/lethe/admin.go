package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/lethe-store/lethe/api"
	apipg "github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	fpg "github.com/lethe-store/lethe/forgettable/postgres"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/keystore"
)

const subjectUsage = `Usage: lethe subject COMMAND --subject ID|- [flags]

Commands (the subject id is read from standard input with --subject -, which
keeps it out of shell history and process lists):
  erase     forget the subject for good (GDPR Art. 17); prints the receipt
  status    print the subject's erasure receipt, if any
  hold      place a legal hold (the subject cannot be erased)
  release   release the legal hold
  readmit   let an erased subject have new personal data, under a new key
  rotate    add a new version of the subject's key
  export    the subject's access export (GDPR Art. 15/20) as JSON on standard
            output (format lethe-subject-export/1, docs/gdpr.md); recorded
            in the access log
`

func runSubject(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, subjectUsage)
		return errors.New("no subject command given")
	}
	cmd := args[0]
	var c config
	var subject, actor, reason, legalBasis, requestID string
	f := newFlagSet("subject "+cmd, getenv, stderr)
	c.bindDatabase(f)
	c.bindVaultAll(f)
	f.fs.StringVar(&subject, "subject", "", "the subject id, or - to read it from standard input")
	f.string(&actor, "actor", "LETHE_ACTOR", defaultActor(getenv), "who does this, for the ledger")
	f.fs.StringVar(&reason, "reason", "", "why (no personal data here)")
	f.fs.StringVar(&legalBasis, "legal-basis", "", "erase: the legal basis, e.g. \"GDPR Art. 17(1)(a)\"")
	f.fs.StringVar(&requestID, "request-id", "", "erase, rotate: your reference of the request")
	if err := f.parse(args[1:]); err != nil {
		return err
	}
	if subject == "-" {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read the subject id: %w", err)
		}
		subject = strings.TrimRight(line, "\r\n")
	}
	if subject == "" {
		return errors.New("no subject: give --subject ID or --subject - (and the id on standard input)")
	}
	if cmd == "export" {
		return withApp(ctx, c, stderr, func(a *app.App) error {
			return exportSubject(ctx, a.Store(), apipg.NewAccessLog(a.Pool()), subject, actor, requestID, stdout)
		})
	}
	return withApp(ctx, c, stderr, func(a *app.App) error {
		return subjectCommand(ctx, cmd, a, subject, actor, reason, legalBasis, requestID, stdout, stderr)
	})
}

// exportSubject writes a subject's access export to stdout, the same
// document as GET /v1/subjects/{subject}/export, after recording the
// access (under the actor, "cli:USER" by default, as its token id).
func exportSubject(ctx context.Context, s *forgettable.Store, log *apipg.AccessLog, subject, actor, requestID string, stdout io.Writer) error {
	started, err := api.WriteSubjectExport(ctx, s, subject, stdout, func(fp forgettable.Footprint) error {
		return log.RecordAccess(ctx, api.AccessRecord{At: time.Now().UTC(), TokenID: actor, Method: "CLI", Route: "lethe subject export",
			RequestID: requestID, StreamIDs: fp.Streams, SubjectRefs: []string{string(fp.Ref)}, Events: fp.Events})
	})
	var erased *forgettable.SubjectGoneError
	if errors.As(err, &erased) {
		return fmt.Errorf("the subject was erased (erasure %s): none of their personal data is left to export; see lethe subject status", eventstore.EventID(erased.Erasure.ID))
	}
	if err != nil && started {
		return fmt.Errorf("subject export failed; the output is incomplete (no \"complete\": true): %w", err)
	}
	if err != nil {
		return fmt.Errorf("subject export failed before writing anything: %w", err)
	}
	return nil
}

func subjectCommand(ctx context.Context, cmd string, a *app.App, subject, actor, reason, legalBasis, requestID string, stdout, stderr io.Writer) error {
	s := a.Store()
	switch cmd {
	case "erase":
		// The answer of POST /v1/subjects/{subject}/erase.
		e, err := s.Forget(ctx, subject, forgettable.ErasureRequest{Actor: actor, RequestID: requestID, Reason: reason, LegalBasis: legalBasis})
		if err != nil {
			return err
		}
		return printJSON(stdout, api.ErasureSummary(e, time.Now()))
	case "status":
		e, ok, err := s.Erasure(ctx, subject)
		if err != nil {
			return err
		}
		if !ok {
			// The reference, for the audit export's --subject-ref.
			ref, err := s.SubjectRef(ctx, subject)
			if err != nil {
				return err
			}
			return printJSON(stdout, struct {
				Status     string `json:"status"`
				SubjectRef string `json:"subjectRef"`
			}{"not erased", string(ref)})
		}
		// The document of GET /v1/subjects/{subject}/erasure, and of
		// lethe erasures get.
		r, err := fullReceipt(ctx, a.Pool(), a.Ledger(), e.ID)
		if err != nil {
			return err
		}
		return printJSON(stdout, r)
	case "hold", "release":
		if err := s.SetHold(ctx, subject, cmd == "hold", actor, reason); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "legal hold %s\n", map[string]string{"hold": "placed", "release": "released"}[cmd])
		return nil
	case "readmit":
		ref, err := s.Readmit(ctx, subject, actor, reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "re-admitted: new personal data goes under subject reference %s; erased data stays unreadable\n", ref)
		return nil
	case "rotate":
		v, err := s.RotateKey(ctx, subject, actor, requestID)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "key rotated: new data is sealed with version %d\n", v)
		return nil
	}
	fmt.Fprint(stderr, subjectUsage)
	return fmt.Errorf("unknown subject command %q", cmd)
}

const policyUsage = `Usage: lethe policy COMMAND [flags]

Protection policies name the fields of an event type that are always
personal data: appends of that type must say whose data it is.
  list                               print every policy
  get    --type T                    print one
  put    --type T --paths /a,/b/c    create or replace
  delete --type T                    remove
`

func runPolicy(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, policyUsage)
		return errors.New("no policy command given")
	}
	cmd := args[0]
	var c config
	var eventType, paths, actor string
	f := newFlagSet("policy "+cmd, getenv, stderr)
	c.bindDatabase(f)
	f.fs.StringVar(&eventType, "type", "", "event type")
	f.fs.StringVar(&paths, "paths", "", "comma-separated JSON Pointers")
	f.string(&actor, "actor", "LETHE_ACTOR", defaultActor(getenv), "who does this, for the audit trail")
	if err := f.parse(args[1:]); err != nil {
		return err
	}
	pool, err := openPool(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// Policies need no keys: validate, then store. Running servers drop
	// their cached policy when the change is announced.
	policies := fpg.NewPolicies(pool)
	switch cmd {
	case "list":
		ps, err := policies.ListPolicies(ctx)
		if err != nil {
			return err
		}
		return printJSON(stdout, ps)
	case "get":
		p, err := policies.Policy(ctx, eventType)
		if err != nil {
			return err
		}
		return printJSON(stdout, p)
	case "put":
		if eventType == "" || paths == "" {
			return errors.New("put needs --type and --paths")
		}
		p := forgettable.Policy{EventType: eventType, Paths: strings.Split(paths, ","), UpdatedBy: actor}
		if err := forgettable.ValidatePolicy(p); err != nil {
			return err
		}
		if err := policies.PutPolicy(ctx, p, ""); err != nil {
			return err
		}
		p, err = policies.Policy(ctx, eventType)
		if err != nil {
			return err
		}
		return printJSON(stdout, p)
	case "delete":
		if err := policies.DeletePolicy(ctx, eventType, actor, ""); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "policy for %s deleted\n", eventType)
		return nil
	}
	fmt.Fprint(stderr, policyUsage)
	return fmt.Errorf("unknown policy command %q", cmd)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func defaultActor(getenv func(string) string) string {
	if u := getenv("USER"); u != "" {
		return "cli:" + u
	}
	if h, err := os.Hostname(); err == nil {
		return "cli:@" + h
	}
	return "cli:"
}

// reapplyErasures destroys again the key of every erased subject, and
// records the run in the audit trail (erasure.reapplied), also when it
// stops on an error after destroying some.
func reapplyErasures(ctx context.Context, a *app.App, actor string, stdout io.Writer) (err error) {
	refs, err := a.Ledger().ErasedRefs(ctx)
	if err != nil {
		return err
	}
	var destroyed []keystore.Ref
	checked := 0
	defer func() {
		if rerr := a.Ledger().RecordReapply(context.WithoutCancel(ctx), actor, checked, destroyed, err == nil); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	for _, ref := range refs {
		report, err := a.Vault().Destroy(ctx, ref)
		if err != nil {
			return fmt.Errorf("after %d of %d: %w", checked, len(refs), err)
		}
		if report.Existed {
			destroyed = append(destroyed, ref)
			fmt.Fprintf(stdout, "destroyed a restored key: subject %s\n", ref)
		}
		if !report.Verified {
			return fmt.Errorf("subject %s: key still present after deletion", ref)
		}
		checked++
	}
	fmt.Fprintf(stdout, "%d erasures checked, %d restored keys destroyed again\n", len(refs), len(destroyed))
	return nil
}
