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
// written before the first byte. Nothing is sent until the first 64 KiB
// are ready, so a failure early on (Vault down, the subject erased) is
// still a problem document; the document ends with "complete": true, and
// a failure after its first byte aborts the connection, so a client never
// takes a cut-off export for a whole one.
func (s *Server) exportSubject(w http.ResponseWriter, r *http.Request) {
	subject, ok := s.param(w, r, "subject")
	if !ok {
		return
	}
	ctx := r.Context()
	err := s.download(w, r, "subject export", func(dw io.Writer) (bool, error) {
		return WriteSubjectExport(ctx, s.opts.Subjects, subject, dw, func(fp forgettable.Footprint) error {
			if err := s.stillAuthenticated(r); err != nil {
				return err // revoked while the first bytes were made: 401, nothing recorded
			}
			if err := s.record(ctx, r, &accessTally{streams: fp.Streams, refs: []string{string(fp.Ref)}, events: fp.Events, always: true}); err != nil {
				return err
			}
			sendDownload(w, "application/json", "subject-export-"+string(fp.Ref)[:16]+".json")
			return nil
		})
	})
	if err != nil {
		s.fail(w, r, err) // an erased subject: 410 subject-gone, naming the erasure
	}
}

// download streams an export: write writes it to the writer it is given,
// calling its begin (which sends the answer's header: sendDownload)
// before the first byte, and reports whether it did. The write deadline
// moves with each write, so the server's WriteTimeout does not cut a long
// export. A failure after the first byte aborts the connection (the
// export lacks its end, which tells a reader it was cut off); one before
// is returned, for the caller to answer with a problem.
//
// The token is checked again before each write (as a subscription's is
// before each batch): once it is revoked, the download stops — cut off,
// without its end, if it had started; 401 unauthenticated if not.
func (s *Server) download(w http.ResponseWriter, r *http.Request, what string, write func(io.Writer) (started bool, err error)) error {
	dw := &deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: s.limits.SSEWriteTimeout,
		check: func() error { return s.stillAuthenticated(r) }}
	started, err := write(dw)
	if err == nil || !started {
		return err
	}
	switch {
	case errors.Is(err, ErrUnauthenticated):
		tok, _ := principalFrom(r.Context())
		s.log.Info(what+" ended: token revoked; connection aborted", "request_id", requestID(r), "token_id", tok.TokenID)
	case r.Context().Err() == nil:
		s.log.Error(what+" failed after it started; connection aborted", "request_id", requestID(r), "err", err)
	}
	panic(http.ErrAbortHandler)
}

// stillAuthenticated checks the request's token again (a lookup in the
// authentication cache, which a revocation clears at once):
// ErrUnauthenticated once it is revoked. A download calls it before its
// header and before each write.
func (s *Server) stillAuthenticated(r *http.Request) error {
	hash, _ := tokenHashFrom(r.Context())
	_, err := s.principal(r.Context(), hash)
	return err
}

// sendDownload sends the header of an export's 200 answer.
func sendDownload(w http.ResponseWriter, contentType, filename string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
}

// SubjectExporter runs a subject's access export; *forgettable.Store
// implements it.
type SubjectExporter interface {
	ExportSubject(ctx context.Context, subject string, record func(forgettable.Footprint) error, fn func(forgettable.RecordedEvent) error) error
}

// WriteSubjectExport writes a data subject's access export document
// (format SubjectExportFormat, wire.SubjectExport) to w as the events are
// read and opened: the server's export route and `lethe subject export`.
// The first 64 KiB are gathered before anything reaches w; begin runs
// with the footprint just before the first byte does: record the access
// there (an error stops the export with nothing written). It reports
// whether anything was written: an error after that leaves a document
// without its final "complete": true; before, w got nothing.
func WriteSubjectExport(ctx context.Context, x SubjectExporter, subject string, w io.Writer, begin func(forgettable.Footprint) error) (started bool, err error) {
	var fp forgettable.Footprint
	sw := &startWriter{w: w, begin: func() error { return begin(fp) }}
	bw := bufio.NewWriterSize(sw, 64<<10)
	count := 0
	err = x.ExportSubject(ctx, subject, func(f forgettable.Footprint) error {
		fp = f
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
	if err == nil {
		_, err = fmt.Fprintf(bw, "\n],\"count\":%d,\"complete\":true}\n", count)
	}
	if err == nil {
		err = bw.Flush()
	}
	return sw.started, err
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
