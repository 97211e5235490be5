package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/postgres"
)

const verifyUsage = `Usage:
  lethe verify [--json]                        check every stream's hash chain
  lethe verify --stream ID [--json]            check one stream's chain
  lethe verify --file F [--offline] [--json]   check an export: an audit export
      (lethe-audit-export/1, NDJSON or CSV: its record count and SHA-256, and
      every chain head it quotes against the store) or a subject access
      export (lethe-subject-export/1: every event's link against the store)

It reads PostgreSQL directly ($LETHE_DATABASE_URL), the store in one read-only
snapshot, never Vault or the server; --file --offline reads the file only. Exit status:
0 everything verified, 1 a broken chain or a file that does not verify,
2 a usage, file or connection error.
`

// exitError carries the exit status main uses for an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode is the process exit status for err: 0 for a help request, an
// exitError's, else 1.
func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// usageError is exit status 2; flag.ErrHelp stays itself (status 0).
func usageError(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &exitError{code: 2, err: err}
}

func runVerify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c config
	var stream, file string
	var asJSON, offline bool
	f := newFlagSet("verify", getenv, stderr)
	f.fs.Usage = func() { fmt.Fprint(stderr, verifyUsage, "\nFlags:\n"); f.fs.PrintDefaults() }
	c.bindDatabase(f)
	f.fs.StringVar(&stream, "stream", "", "check this stream only")
	f.fs.StringVar(&file, "file", "", "check this export file")
	f.fs.BoolVar(&asJSON, "json", false, "print a machine-readable report")
	f.fs.BoolVar(&offline, "offline", false, "with --file: check the file alone, not the chain heads it quotes against the store")
	if err := f.parse(args); err != nil {
		return usageError(err)
	}
	switch {
	case stream != "" && file != "":
		return usageError(errors.New("give --stream or --file, not both"))
	case offline && file == "":
		return usageError(errors.New("--offline only goes with --file"))
	case stream != "":
		if err := eventstore.ValidateStreamID(stream); err != nil {
			return usageError(err)
		}
	}
	var store *postgres.Store
	if file == "" || !offline {
		pool, err := openPool(ctx, c.DatabaseURL)
		if err != nil {
			return usageError(err)
		}
		defer pool.Close()
		store = postgres.New(pool, postgres.Options{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		defer store.Close()
	}
	if file != "" {
		return verifyFile(ctx, store, file, asJSON, stdout)
	}
	return verifyStore(ctx, store, stream, asJSON, stdout)
}

// breakText explains a chain break reason to a person.
var breakText = map[string]string{
	eventstore.BreakLinkMismatch:  "the event as stored does not match its link: it, its link or its place was changed",
	eventstore.BreakVersionGap:    "the event is missing: deleted",
	eventstore.BreakMissingLink:   "the event has no link, after events that have one",
	eventstore.BreakBadLinkLength: "the stored link is not 32 bytes",
	eventstore.BreakBadContent:    "the stored data or metadata is not readable JSON",
}

type verifyReport struct {
	Streams   int64        `json:"streams"`
	Events    int64        `json:"events"`
	Unchained int64        `json:"unchained"`
	Broken    []chainBreak `json:"broken"`
	// Stream is the one stream's report (--stream).
	Stream *streamReport `json:"stream,omitempty"`
	OK     bool          `json:"ok"`
}

type chainBreak struct {
	Stream  string `json:"stream"`
	Version int64  `json:"version"`
	Reason  string `json:"reason"`
}

type streamReport struct {
	StreamID    string `json:"streamId"`
	Events      int64  `json:"events"`
	Unchained   int64  `json:"unchained"`
	LastVersion int64  `json:"lastVersion"`
	Head        string `json:"head,omitempty"`
}

func verifyStore(ctx context.Context, s *postgres.Store, stream string, asJSON bool, stdout io.Writer) error {
	rep := verifyReport{Broken: []chainBreak{}}
	err := s.VerifyChains(ctx, stream, func(r eventstore.ChainReport) error {
		rep.Streams++
		rep.Events += r.Events
		rep.Unchained += r.Unchained
		if stream != "" {
			rep.Stream = &streamReport{StreamID: r.StreamID, Events: r.Events, Unchained: r.Unchained, LastVersion: r.LastVersion, Head: hex.EncodeToString(r.Head)}
		}
		if r.Broken == nil {
			return nil
		}
		b := chainBreak{Stream: r.StreamID, Version: r.Broken.Version, Reason: r.Broken.Reason}
		rep.Broken = append(rep.Broken, b)
		if !asJSON {
			_, err := fmt.Fprintf(stdout, "stream %s version %d: %s (%s)\n", b.Stream, b.Version, b.Reason, breakText[b.Reason])
			return err
		}
		return nil
	})
	if err != nil {
		return usageError(err)
	}
	rep.OK = len(rep.Broken) == 0
	if asJSON {
		if err := printJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		if r := rep.Stream; r != nil {
			head := "no link"
			if r.Head != "" {
				head = "head " + r.Head
			}
			fmt.Fprintf(stdout, "stream %s: %d events, last version %d, %s\n", r.StreamID, r.Events, r.LastVersion, head)
		}
		verdict := "every chain holds"
		if !rep.OK {
			verdict = fmt.Sprintf("%d broken", len(rep.Broken))
		}
		unchained := ""
		if rep.Unchained > 0 {
			unchained = fmt.Sprintf(" (%d unchained: stored before links existed)", rep.Unchained)
		}
		fmt.Fprintf(stdout, "verified %d streams, %d events%s: %s\n", rep.Streams, rep.Events, unchained, verdict)
	}
	if !rep.OK {
		return &exitError{code: 1, err: fmt.Errorf("verify: %d broken chains", len(rep.Broken))}
	}
	return nil
}

// Export formats `lethe verify --file` reads.
const (
	auditExportFormat   = "lethe-audit-export/1"
	subjectExportFormat = "lethe-subject-export/1"
	auditCSVHeader      = "id,at,kind,actor,request_id,stream,from_version,to_version,subject_refs,link,details"
)

// fileReport is the report of `lethe verify --file`.
type fileReport struct {
	File     string `json:"file"`
	Format   string `json:"format"`
	Encoding string `json:"encoding"` // ndjson, csv or json
	// Records is the number of records (audit export) or events (subject
	// export) read.
	Records int64 `json:"records"`
	// SummaryCount is the count the file states about itself.
	SummaryCount *int64 `json:"summaryCount"`
	// DigestOK: the audit export's SHA-256 matches its bytes (nil for a
	// subject export, which carries none).
	DigestOK *bool `json:"digestOk,omitempty"`
	Complete bool  `json:"complete"`
	// LinksChecked is how many quoted links were looked up in the store.
	LinksChecked int64 `json:"linksChecked"`
	// Unchained counts quoted events stored before links existed.
	Unchained int64         `json:"unchained"`
	Offline   bool          `json:"offline"`
	Problems  []fileProblem `json:"problems"`
	OK        bool          `json:"ok"`
}

type fileProblem struct {
	// Line is the file's line (audit export) or the event's index from 1
	// (subject export); 0 for the file as a whole.
	Line    int64  `json:"line,omitempty"`
	Stream  string `json:"stream,omitempty"`
	Version *int64 `json:"version,omitempty"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
}

// File problem reasons.
const (
	probNoSummary        = "no-summary"
	probDataAfterSummary = "data-after-summary"
	probCountMismatch    = "count-mismatch"
	probDigestMismatch   = "digest-mismatch"
	probIncomplete       = "incomplete"
	probBadRecord        = "bad-record"
	probMissingEvent     = "missing-event"
	probLinkMismatch     = "link-mismatch"
)

// fileVerifier checks an export file as it reads it: quoted links are
// looked up in batches, so memory stays flat however long the file.
type fileVerifier struct {
	ctx     context.Context
	store   *postgres.Store // nil: offline
	rep     *fileReport
	pending []quotedLink
	out     io.Writer // problems as they are found; nil with --json
}

// quotedLink is a link an export quotes: what the store held at a stream
// and version when the export was written.
type quotedLink struct {
	line    int64
	stream  string
	version int64
	link    []byte
}

const linkBatch = 1000

func (v *fileVerifier) problem(p fileProblem) {
	v.rep.Problems = append(v.rep.Problems, p)
	if v.out == nil {
		return
	}
	var where []string
	if p.Line > 0 {
		where = append(where, "line "+strconv.FormatInt(p.Line, 10))
	}
	if p.Stream != "" {
		where = append(where, "stream "+p.Stream)
	}
	if p.Version != nil {
		where = append(where, "version "+strconv.FormatInt(*p.Version, 10))
	}
	prefix := strings.Join(where, " ")
	if prefix == "" {
		prefix = "file"
	}
	fmt.Fprintf(v.out, "%s: %s (%s)\n", prefix, p.Reason, p.Detail)
}

// quote queues a quoted link for the check against the store.
func (v *fileVerifier) quote(line int64, stream string, version int64, linkHex string) error {
	link, err := hex.DecodeString(linkHex)
	if err != nil || len(link) != eventstore.LinkSize {
		v.problem(fileProblem{Line: line, Stream: stream, Version: &version, Reason: probBadRecord, Detail: "the link is not 64 hex digits"})
		return nil
	}
	if v.store == nil {
		return nil
	}
	v.pending = append(v.pending, quotedLink{line: line, stream: stream, version: version, link: link})
	if len(v.pending) >= linkBatch {
		return v.flush()
	}
	return nil
}

func (v *fileVerifier) flush() error {
	if len(v.pending) == 0 {
		return nil
	}
	streams := make([]string, len(v.pending))
	versions := make([]int64, len(v.pending))
	for i, q := range v.pending {
		streams[i], versions[i] = q.stream, q.version
	}
	found, err := v.store.LinksAt(v.ctx, streams, versions)
	if err != nil {
		return err
	}
	for i, q := range v.pending {
		v.rep.LinksChecked++
		switch f := found[i]; {
		case !f.Found:
			v.problem(fileProblem{Line: q.line, Stream: q.stream, Version: &q.version, Reason: probMissingEvent,
				Detail: "the store has no event there: the stream was cut short or deleted"})
		case !bytes.Equal(f.Link, q.link):
			v.problem(fileProblem{Line: q.line, Stream: q.stream, Version: &q.version, Reason: probLinkMismatch,
				Detail: "the store holds another link there: the event or one before it was changed"})
		}
	}
	v.pending = v.pending[:0]
	return nil
}

func verifyFile(ctx context.Context, s *postgres.Store, name string, asJSON bool, stdout io.Writer) error {
	f, err := os.Open(name)
	if err != nil {
		return usageError(err)
	}
	defer f.Close()
	rep := &fileReport{File: name, Offline: s == nil, Problems: []fileProblem{}}
	v := &fileVerifier{ctx: ctx, store: s, rep: rep}
	if !asJSON {
		v.out = stdout
	}
	br := bufio.NewReaderSize(f, 64<<10)
	kind, err := sniffExport(br)
	if err != nil {
		return usageError(fmt.Errorf("%s: %w", name, err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return usageError(err)
	}
	br.Reset(f)
	switch kind {
	case "ndjson":
		err = v.auditNDJSON(br)
	case "csv":
		err = v.auditCSV(f)
	default:
		err = v.subjectExport(br)
	}
	if err == nil {
		err = v.flush()
	}
	if err != nil {
		return usageError(fmt.Errorf("verify %s: %w", name, err))
	}
	rep.OK = len(rep.Problems) == 0
	if asJSON {
		if err := printJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		what := "subject access export"
		if rep.Format == auditExportFormat {
			what = "audit export (" + rep.Encoding + ")"
		}
		digest := ""
		if rep.DigestOK != nil {
			digest = ", SHA-256 does not match"
			if *rep.DigestOK {
				digest = ", SHA-256 matches"
			}
		}
		store := fmt.Sprintf("%d quoted links checked against the store", rep.LinksChecked)
		if rep.Offline {
			store = "not checked against the store (--offline)"
		}
		verdict := "verified"
		if !rep.OK {
			verdict = fmt.Sprintf("%d problems", len(rep.Problems))
		}
		fmt.Fprintf(stdout, "%s %s: %d records%s; %s: %s\n", what, name, rep.Records, digest, store, verdict)
	}
	if !rep.OK {
		return &exitError{code: 1, err: fmt.Errorf("verify %s: %d problems", name, len(rep.Problems))}
	}
	return nil
}

// sniffExport tells an export's kind from its first bytes: "csv" (the
// audit export's header), "ndjson" (an audit record or summary line) or
// "subject" (a document whose first member is the format).
func sniffExport(br *bufio.Reader) (string, error) {
	head, _ := br.Peek(64 << 10)
	trimmed := bytes.TrimLeft(head, " \t\r\n\ufeff")
	switch {
	case bytes.HasPrefix(trimmed, []byte(auditCSVHeader)):
		return "csv", nil
	case bytes.HasPrefix(trimmed, []byte("{")):
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			break
		}
		key, err := dec.Token()
		if err != nil {
			break
		}
		if key == "format" {
			var format string
			if err := dec.Decode(&format); err == nil && format == subjectExportFormat {
				return "subject", nil
			}
			return "", fmt.Errorf("not an export lethe verify knows (want %s or %s)", auditExportFormat, subjectExportFormat)
		}
		return "ndjson", nil
	}
	return "", fmt.Errorf("not an export lethe verify knows (want %s, NDJSON or CSV, or %s)", auditExportFormat, subjectExportFormat)
}

// auditLine is what verify reads of an NDJSON audit export's line.
type auditLine struct {
	Kind      string        `json:"kind"`
	Stream    string        `json:"stream"`
	ToVersion *int64        `json:"toVersion"`
	Link      string        `json:"link"`
	Summary   *auditSummary `json:"summary"`
}

type auditSummary struct {
	Format   string `json:"format"`
	Count    *int64 `json:"count"`
	SHA256   string `json:"sha256"`
	Complete *bool  `json:"complete"` // NDJSON only
}

// maxAuditLine bounds a line of an audit export: the longest record the
// export can write is an append of MaxEventsPerAppend events, each with
// MaxSubjectsPerEvent references of their own (67 bytes each in
// subjectRefs), with 1 MiB for the rest. Memory grows to a line only when
// the file has one that long.
const maxAuditLine = eventstore.MaxEventsPerAppend*eventstore.MaxSubjectsPerEvent*(eventstore.LinkSize*2+3) + 1<<20

// readAuditLine reads the next line of r, its newline included, into
// long's storage if it is longer than r's buffer; it returns io.EOF with
// the last line if that has no newline. The line is valid until the next
// call.
func readAuditLine(r *bufio.Reader, long *[]byte) ([]byte, error) {
	b, err := r.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return b, err
	}
	*long = append((*long)[:0], b...)
	for errors.Is(err, bufio.ErrBufferFull) {
		if len(*long) > maxAuditLine {
			return nil, fmt.Errorf("longer than %d bytes", maxAuditLine)
		}
		b, err = r.ReadSlice('\n')
		*long = append(*long, b...)
	}
	return *long, err
}

// auditNDJSON checks an NDJSON audit export: one record a line, then the
// summary line with the count of records and the SHA-256 of every byte
// before it.
func (v *fileVerifier) auditNDJSON(r io.Reader) error {
	v.rep.Format, v.rep.Encoding = auditExportFormat, "ndjson"
	br := bufio.NewReaderSize(r, 1<<20)
	h := sha256.New()
	var summary *auditSummary
	var sum, long []byte
	var line int64
	for {
		b, err := readAuditLine(br, &long)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("line %d: %w", line+1, err)
		}
		if len(b) == 0 && errors.Is(err, io.EOF) {
			break
		}
		line++
		text := bytes.TrimSpace(b)
		if summary != nil {
			if len(text) > 0 {
				v.problem(fileProblem{Line: line, Reason: probDataAfterSummary, Detail: "the summary must be the last line"})
				return nil
			}
		} else if len(text) > 0 {
			var rec auditLine
			if jerr := json.Unmarshal(text, &rec); jerr != nil {
				v.problem(fileProblem{Line: line, Reason: probBadRecord, Detail: "not a JSON object"})
			}
			if rec.Summary != nil {
				summary, sum = rec.Summary, h.Sum(nil)
			} else {
				v.rep.Records++
				h.Write(b)
				if rec.Kind == "append" && rec.Link != "" {
					if rec.Stream == "" || rec.ToVersion == nil {
						v.problem(fileProblem{Line: line, Reason: probBadRecord, Detail: "an append with a link but no stream or toVersion"})
					} else if qerr := v.quote(line, rec.Stream, *rec.ToVersion, rec.Link); qerr != nil {
						return qerr
					}
				}
			}
		} else {
			h.Write(b)
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	v.checkSummary(summary, sum, true)
	return nil
}

// auditCSV checks a CSV audit export: the header, one row a record, and a
// last row of kind "summary" whose details hold the count and the SHA-256
// of every byte before that row. It reads the file twice: the rows, then
// the bytes before the summary row for the digest.
func (v *fileVerifier) auditCSV(f *os.File) error {
	v.rep.Format, v.rep.Encoding = auditExportFormat, "csv"
	cr := csv.NewReader(bufio.NewReaderSize(f, 64<<10))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if strings.Join(header, ",") != auditCSVHeader {
		return errors.New("not the audit export's CSV header")
	}
	col := map[string]int{}
	for i, name := range strings.Split(auditCSVHeader, ",") {
		col[name] = i
	}
	var summary *auditSummary
	var summaryAt int64
	for {
		at := cr.InputOffset()
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			line := 0
			if errors.As(err, &pe) {
				line = pe.Line
			}
			v.problem(fileProblem{Line: int64(line), Reason: probBadRecord, Detail: "not a CSV row"})
			return nil
		}
		line, _ := cr.FieldPos(0)
		if summary != nil {
			v.problem(fileProblem{Line: int64(line), Reason: probDataAfterSummary, Detail: "the summary must be the last row"})
			return nil
		}
		if len(rec) != len(col) {
			v.problem(fileProblem{Line: int64(line), Reason: probBadRecord, Detail: fmt.Sprintf("%d columns, want %d", len(rec), len(col))})
			continue
		}
		if rec[col["kind"]] == "summary" {
			summary, summaryAt = &auditSummary{}, at
			if err := json.Unmarshal([]byte(rec[col["details"]]), summary); err != nil {
				v.problem(fileProblem{Line: int64(line), Reason: probBadRecord, Detail: "the summary's details are not a JSON object"})
			}
			continue
		}
		v.rep.Records++
		if rec[col["kind"]] == "append" && rec[col["link"]] != "" {
			stream := rec[col["stream"]]
			version, err := strconv.ParseInt(rec[col["to_version"]], 10, 64)
			if stream == "" || err != nil {
				v.problem(fileProblem{Line: int64(line), Reason: probBadRecord, Detail: "an append with a link but no stream or to_version"})
				continue
			}
			if err := v.quote(int64(line), stream, version, rec[col["link"]]); err != nil {
				return err
			}
		}
	}
	var sum []byte
	if summary != nil {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		h := sha256.New()
		if _, err := io.CopyN(h, f, summaryAt); err != nil {
			return err
		}
		sum = h.Sum(nil)
	}
	v.checkSummary(summary, sum, false)
	return nil
}

// checkSummary compares an audit export's summary with what was read.
func (v *fileVerifier) checkSummary(s *auditSummary, sum []byte, hasComplete bool) {
	if s == nil {
		v.problem(fileProblem{Reason: probNoSummary, Detail: "the file has no summary: it was cut short"})
		return
	}
	v.rep.SummaryCount = s.Count
	if s.Format != auditExportFormat {
		v.problem(fileProblem{Reason: probBadRecord, Detail: fmt.Sprintf("the summary's format is %q, want %s", s.Format, auditExportFormat)})
	}
	if s.Count == nil || *s.Count != v.rep.Records {
		v.problem(fileProblem{Reason: probCountMismatch, Detail: fmt.Sprintf("%d records read, the summary says %s", v.rep.Records, countText(s.Count))})
	}
	ok := hex.EncodeToString(sum) == strings.ToLower(s.SHA256)
	v.rep.DigestOK = &ok
	if !ok {
		v.problem(fileProblem{Reason: probDigestMismatch, Detail: "the SHA-256 of the records is not the summary's: the file was changed"})
	}
	v.rep.Complete = !hasComplete || s.Complete != nil && *s.Complete
	if !v.rep.Complete {
		v.problem(fileProblem{Reason: probIncomplete, Detail: "the summary says the export is not complete"})
	}
}

func countText(n *int64) string {
	if n == nil {
		return "nothing"
	}
	return strconv.FormatInt(*n, 10)
}

// subjectExport checks a subject access export: each event's link against
// the store, and the document's count and "complete". It streams the
// document: one event in memory at a time.
func (v *fileVerifier) subjectExport(r io.Reader) error {
	v.rep.Format, v.rep.Encoding = subjectExportFormat, "json"
	dec := json.NewDecoder(r)
	bad := func(err error, detail string) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			v.problem(fileProblem{Reason: probIncomplete, Detail: "the document ends early: it was cut off"})
			return nil
		}
		v.problem(fileProblem{Reason: probBadRecord, Detail: detail})
		return nil
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return bad(err, "not a JSON object")
	}
	var count *int64
	complete := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bad(err, "not valid JSON")
		}
		switch t {
		case "events":
			if t, err := dec.Token(); err != nil || t != json.Delim('[') {
				return bad(err, "events is not an array")
			}
			for dec.More() {
				var e struct {
					StreamID string `json:"streamId"`
					Version  *int64 `json:"version"`
					Link     string `json:"link"`
				}
				if err := dec.Decode(&e); err != nil {
					return bad(err, "an event is not valid JSON")
				}
				v.rep.Records++
				switch {
				case e.StreamID == "" || e.Version == nil:
					v.problem(fileProblem{Line: v.rep.Records, Reason: probBadRecord, Detail: "an event without streamId or version"})
				case e.Link == "":
					v.rep.Unchained++ // stored before links existed
				default:
					if err := v.quote(v.rep.Records, e.StreamID, *e.Version, e.Link); err != nil {
						return err
					}
				}
			}
			if _, err := dec.Token(); err != nil {
				return bad(err, "not valid JSON")
			}
		case "count":
			if err := dec.Decode(&count); err != nil {
				return bad(err, "count is not a number")
			}
		case "complete":
			if err := dec.Decode(&complete); err != nil {
				return bad(err, "complete is not a boolean")
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return bad(err, "not valid JSON")
			}
		}
	}
	v.rep.SummaryCount, v.rep.Complete = count, complete
	if !complete {
		v.problem(fileProblem{Reason: probIncomplete, Detail: `no "complete": true: the export was cut off`})
	}
	if count == nil || *count != v.rep.Records {
		v.problem(fileProblem{Reason: probCountMismatch, Detail: fmt.Sprintf("%d events read, the document says %s", v.rep.Records, countText(count))})
	}
	return nil
}
