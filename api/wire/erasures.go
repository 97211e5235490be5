package wire

import "time"

// ErasureProof is the detail of a full erasure receipt (GET
// /v1/erasures/{erasureId}, GET /v1/subjects/{subject}/erasure): where the
// erasure is in the log, which streams it reached, and which read models
// are clean of it. Lists and erase answers leave it out.
type ErasureProof struct {
	// Records are the erasure's records in the system stream
	// $lethe-erasures, in log order: subject-fenced (the subject was
	// fenced) and subject-erased (the key was destroyed). Empty only if
	// the erasure stopped before its first record (erase again).
	Records []ErasureRecord `json:"records,omitzero"`
	// Streams are the streams whose events carry the subject's reference,
	// in byte order: the events whose personal fields the erasure
	// shredded. At most a page (streamsLimit, default 1,000).
	Streams []string `json:"streams,omitzero"`
	// StreamsNext is set when more streams follow: pass it as streamsAfter
	// for the next page.
	StreamsNext string `json:"streamsNext,omitempty"`
	// Projections are the persisted projections (read models) and whether
	// each is clean of the erasure.
	Projections []ErasureProjection `json:"projections,omitzero"`
}

// ErasureRecord is an event of $lethe-erasures that an erasure appended.
type ErasureRecord struct {
	StreamID string `json:"streamId"`
	EventID  string `json:"eventId"`
	// Type is "subject-fenced" or "subject-erased".
	Type       string    `json:"type"`
	Position   int64     `json:"position"`
	RecordedAt time.Time `json:"recordedAt"`
}

// ErasureProjection is a persisted projection as an erasure receipt sees
// it.
type ErasureProjection struct {
	Name string `json:"name"`
	// Position is the projection's checkpoint: every event of the global
	// log up to it has been applied.
	Position       int64 `json:"position"`
	RebuildPending bool  `json:"rebuildPending"`
	// Cleaned: the checkpoint has reached the erasure's last record, so
	// the projection has applied it (its Forget removed what it derived
	// from the subject's events) and holds nothing the erasure covers.
	// False while it has not, e.g. while it is rebuilt from before the
	// record, and when the erasure has no record yet.
	Cleaned bool `json:"cleaned"`
}

// ErasureList answers GET /v1/erasures: a page of the erasure ledger,
// newest request first, without the proofs' details.
type ErasureList struct {
	Erasures []ErasureReceipt `json:"erasures"`
	// Next is the cursor of the next page (pass it as cursor, with the
	// same filters); null on the last page.
	Next *string `json:"next"`
}
