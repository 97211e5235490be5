package api

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/forgettable"
)

// SubjectExportFormat names the subject export's document format
// (docs/gdpr.md).
const SubjectExportFormat = "lethe-subject-export/1"

// exportSubject streams a data subject's access export (GDPR Art. 15 and
// 20): one JSON document, written as the events are read and opened, so a
// subject with millions of events costs no more memory than one with ten.
// The access log row (the subject's reference, streams and event count) is
// written before the first byte. The document ends with "complete": true;
// a failure after the first byte aborts the connection, so a client never
// takes a cut-off export for a whole one.
func (s *Server) exportSubject(w http.ResponseWriter, r *http.Request) {
	subject, ok := s.param(w, r, "subject")
	if !ok {
		return
	}
	ctx := r.Context()
	// A subject with many events takes longer than the server's write
	// timeout: the deadline moves with each write, as the audit export's.
	dw := &deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: s.limits.SSEWriteTimeout}
	started, err := WriteSubjectExport(ctx, s.opts.Subjects, subject, dw, func(fp forgettable.Footprint) error {
		if err := s.record(ctx, r, &accessTally{streams: fp.Streams, refs: []string{string(fp.Ref)}, events: fp.Events, always: true}); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="subject-export-%s.json"`, string(fp.Ref)[:16]))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err == nil {
		return
	}
	if started {
		s.log.Error("subject export failed after it started; connection aborted", "request_id", requestID(r), "err", err)
		panic(http.ErrAbortHandler)
	}
	var erased *forgettable.SubjectErasedError
	if errors.As(err, &erased) {
		writeProblem(w, r, Problem{Type: ProblemTypeBase + "subject-gone", Title: problemTitles["subject-gone"], Status: http.StatusGone,
			Detail: "The data subject was erased: none of their personal data is left to export. " +
				"The erasure receipt: GET /v1/subjects/{subject}/erasure.",
			ErasureID: uuidString(erased.Erasure.ID)})
		return
	}
	s.fail(w, r, err)
}

// SubjectExporter runs a subject's access export; *forgettable.Store
// implements it.
type SubjectExporter interface {
	ExportSubject(ctx context.Context, subject string, record func(forgettable.Footprint) error, fn func(forgettable.RecordedEvent) error) error
}

// WriteSubjectExport writes a data subject's access export document
// (format SubjectExportFormat, wire.SubjectExport) to w as the events are
// read and opened: the server's export route and `lethe subject export`.
// begin runs with the footprint before the first byte is written: record
// the access there (an error stops the export with nothing written). It
// reports whether anything was written: an error after that leaves a
// document without its final "complete": true.
func WriteSubjectExport(ctx context.Context, x SubjectExporter, subject string, w io.Writer, begin func(forgettable.Footprint) error) (started bool, err error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	count := 0
	err = x.ExportSubject(ctx, subject, func(fp forgettable.Footprint) error {
		if err := begin(fp); err != nil {
			return err
		}
		started = true
		// The header's fields, then the events array left open: the
		// document is written as the events come.
		head, err := json.Marshal(struct {
			Format      string    `json:"format"`
			SubjectRef  string    `json:"subjectRef"`
			GeneratedAt time.Time `json:"generatedAt"`
			Streams     []string  `json:"streams"`
		}{SubjectExportFormat, string(fp.Ref), time.Now().UTC(), nonNil(fp.Streams)})
		if err != nil {
			return err
		}
		bw.Write(head[:len(head)-1])
		_, err = bw.WriteString(`,"events":[`)
		return err
	}, func(e forgettable.RecordedEvent) error {
		b, err := json.Marshal(wire.ExportedEvent{Event: toWireEvent(e), Link: hex.EncodeToString(e.Link)})
		if err != nil {
			return err
		}
		if count > 0 {
			bw.WriteByte(',')
		}
		bw.WriteByte('\n')
		count++
		_, err = bw.Write(b)
		return err
	})
	if err != nil {
		_ = bw.Flush()
		return started, err
	}
	fmt.Fprintf(bw, "\n],\"count\":%d,\"complete\":true}\n", count)
	return true, bw.Flush()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SubjectExport is the subject export's document, for clients that read
// it whole (api/client).
type SubjectExport = wire.SubjectExport
