package wire

import (
	"encoding/json"
	"time"
)

// AuditExportFormat names the audit export's format (docs/api.md "Audit
// export"); `lethe verify --file` reads it.
const AuditExportFormat = "lethe-audit-export/1"

// Audit record kinds: what happened. Each comes from one append-only table
// (docs/api.md "Audit export").
const (
	AuditAppend           = "append"            // events: one record per append
	AuditPIIRead          = "pii.read"          // access_log: an answer with decrypted personal data
	AuditErasureRequested = "erasure.requested" // erasures
	AuditErasureCompleted = "erasure.completed" // erasure_completions
	AuditHoldPlaced       = "hold.placed"       // legal_holds
	AuditHoldReleased     = "hold.released"     // legal_holds
	AuditReadmission      = "readmission"       // readmissions
	AuditKeyRotated       = "key.rotated"       // audit_log
	AuditPolicyPut        = "policy.put"        // audit_log
	AuditPolicyDeleted    = "policy.deleted"    // audit_log
	AuditTokenCreated     = "token.created"     // audit_log
	AuditTokenRevoked     = "token.revoked"     // audit_log
	// AuditErasureReapplied is a run of `lethe erasures reapply`, which
	// destroys again the keys of erased subjects that a Vault restore
	// brought back.
	AuditErasureReapplied = "erasure.reapplied" // audit_log
)

// AuditSummaryKind is the kind of the CSV export's last row.
const AuditSummaryKind = "summary"

// AuditKinds lists every audit record kind, in the order of their sources'
// rank in the export (records at the same instant).
var AuditKinds = []string{
	AuditAppend, AuditPIIRead, AuditErasureRequested, AuditErasureCompleted, AuditHoldPlaced, AuditHoldReleased,
	AuditReadmission, AuditKeyRotated, AuditPolicyPut, AuditPolicyDeleted, AuditTokenCreated, AuditTokenRevoked,
	AuditErasureReapplied,
}

// AuditCSVHeader is the CSV export's header row.
var AuditCSVHeader = []string{"id", "at", "kind", "actor", "request_id", "stream", "from_version", "to_version", "subject_refs", "link", "details"}

// AuditRecord is one line of the NDJSON audit export: one action, named by
// references only (no personal data). Empty fields are left out.
type AuditRecord struct {
	// ID is "<source table>:<key>": events:<first position of the
	// append>, access_log:<id>, erasures:<erasure id>,
	// erasure_completions:<erasure id>, legal_holds:<id>,
	// readmissions:<erased reference>, audit_log:<id>.
	ID        string    `json:"id"`
	At        time.Time `json:"at"`
	Kind      string    `json:"kind"`
	Actor     string    `json:"actor,omitempty"`
	RequestID string    `json:"requestId,omitempty"`
	// Stream, FromVersion and ToVersion: an append's stream and versions.
	Stream      string `json:"stream,omitempty"`
	FromVersion *int64 `json:"fromVersion,omitempty"`
	ToVersion   *int64 `json:"toVersion,omitempty"`
	// Streams: the streams a pii.read showed.
	Streams []string `json:"streams,omitempty"`
	// SubjectRefs are subject references (64 hex digits), never ids.
	SubjectRefs []string `json:"subjectRefs,omitempty"`
	// Link is an append's last event's hash-chain link (hex): the stream's
	// chain head after the append.
	Link    string          `json:"link,omitempty"`
	Details json.RawMessage `json:"details,omitempty"`
}

// AuditSummary is the last line of an NDJSON audit export, inside
// {"summary": ...}: a whole export has one, with Complete true.
type AuditSummary struct {
	Format string `json:"format"`
	// Count is the number of record lines before the summary.
	Count int64 `json:"count"`
	// SHA256 is the hex SHA-256 of every byte before the summary line.
	SHA256      string     `json:"sha256"`
	From        *time.Time `json:"from,omitempty"`
	To          *time.Time `json:"to,omitempty"`
	Kinds       []string   `json:"kinds"`
	Actor       string     `json:"actor,omitempty"`
	Stream      string     `json:"stream,omitempty"`
	SubjectRef  string     `json:"subjectRef,omitempty"` // the subject filter
	GeneratedAt time.Time  `json:"generatedAt"`
	Complete    bool       `json:"complete"`
}

// AuditSummaryLine is the NDJSON export's last line.
type AuditSummaryLine struct {
	Summary *AuditSummary `json:"summary"`
}

// AuditCSVSummary is the details column of the CSV export's last row
// (kind "summary"): SHA256 covers every byte before that row, the header
// included.
type AuditCSVSummary struct {
	Format string `json:"format"`
	Count  int64  `json:"count"`
	SHA256 string `json:"sha256"`
}
