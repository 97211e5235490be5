// Package forgettable is the Forgettable Payload pattern ("crypto-shredding")
// over an event store: personal data inside events is encrypted field by
// field under a key per data subject, and forgetting a subject destroys the
// key, so that every copy of their data — in the log, in backups, in
// snapshots, in exports — becomes unreadable at once while the events
// themselves stay.
//
// Declaring personal data. An append says, per event, whose data which
// fields are (PersonalData: a subject id and JSON Pointers), several subjects
// per event if need be. Protection policies (per event type, stored in
// PostgreSQL) name fields that are always personal data: an append of that
// type that does not say whose data it is is refused; with exactly one
// declared subject, policy fields are sealed for that subject.
//
// Sealing. Each declared field's JSON value is replaced by an envelope
// string (see EnvelopePrefix for the format): XChaCha20-Poly1305 under the
// subject's current key, bound by the associated data to the stream, event,
// path, subject reference and key version. The event records the references
// of its subjects (eventstore.EventData.SubjectRefs), never their ids.
//
// Reading. Stored events come back with the erasure ledger's verdict for
// their subjects, read in the same statement (eventstore.RecordedEvent.
// ErasedRefs). Open fetches each needed key once (concurrently, cached by
// the key store), decrypts, and shows fields of erased subjects as null with
// a Redaction{Path, "forgotten"}. A key store that cannot be reached is an
// error (keystore.ErrUnavailable), never a redaction; so is a sealed field
// that does not open (ErrTampered) and a key missing without an erasure
// record (ErrKeyMissing).
//
// Forgetting. Forget writes the erasure ledger entry first (from then on the
// database refuses appends carrying the subject and every read shows it
// forgotten, in every process), announces it so that caches drop the key,
// destroys the key in the key store for good and verifies it is gone,
// appends a record without personal data to ErasedStreamID, and returns the
// receipt. Legal holds block it; re-admission gives an erased subject a new
// reference and key for new data, leaving the old data forgotten.
//
// Ports. A Store is built over an EventStore (eventstore.Store plus the
// reads it relies on), a keystore.Store, a Ledger and a Policies; their
// PostgreSQL implementations are eventstore/postgres and
// forgettable/postgres, the Vault one keystore/vault, and internal/app
// puts them together. The code is split by responsibility: append.go
// (planning and sealing an append), read.go and open.go (reading and
// opening), forget.go (the erasure protocol), export.go (the subject's
// access export), subjects.go (holds, re-admission, key rotation),
// policy.go (protection policies).
package forgettable
