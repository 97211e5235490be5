package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
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
	bw := bufio.NewWriterSize(w, 64<<10)
	started, count := false, 0
	err := s.opts.Subjects.ExportSubject(ctx, subject, func(fp forgettable.Footprint) error {
		if err := s.record(ctx, r, &accessTally{streams: fp.Streams, refs: []string{string(fp.Ref)}, events: fp.Events}); err != nil {
			return err
		}
		head, err := json.Marshal(struct {
			Format      string    `json:"format"`
			SubjectRef  string    `json:"subjectRef"`
			GeneratedAt time.Time `json:"generatedAt"`
			Streams     []string  `json:"streams"`
		}{SubjectExportFormat, string(fp.Ref), time.Now().UTC(), nonNil(fp.Streams)})
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="subject-export-%s.json"`, string(fp.Ref)[:16]))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		started = true
		bw.Write(head[:len(head)-1]) // the header's fields, the object left open
		bw.WriteString(`,"events":[`)
		return nil
	}, func(e forgettable.RecordedEvent) error {
		b, err := json.Marshal(toWireEvent(e))
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
		if started {
			s.log.Error("subject export failed after it started; connection aborted", "request_id", requestID(r), "err", err)
			panic(http.ErrAbortHandler)
		}
		var erased *forgettable.SubjectErasedError
		if errors.As(err, &erased) {
			writeProblem(w, r, Problem{Type: ProblemTypeBase + "subject-erased", Title: problemTitles["subject-erased"], Status: http.StatusGone,
				Detail: "The data subject was erased: none of their personal data is left to export. " +
					"The erasure receipt: GET /v1/subjects/{subject}/erasure.",
				ErasureID: uuidString(erased.Erasure.ID)})
			return
		}
		s.fail(w, r, err)
		return
	}
	fmt.Fprintf(bw, "\n],\"count\":%d,\"complete\":true}\n", count)
	if err := bw.Flush(); err != nil {
		s.log.Warn("subject export not delivered whole", "request_id", requestID(r), "err", err)
	}
}

// WireEvent is an opened event as the API shows it (the subject export's
// events, for the CLI's export).
func WireEvent(e forgettable.RecordedEvent) wire.Event { return toWireEvent(e) }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SubjectExport is the subject export's document, for clients that read
// it whole (api/client).
type SubjectExport = wire.SubjectExport
