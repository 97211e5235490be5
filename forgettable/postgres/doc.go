// Package postgres is the PostgreSQL adapter of package forgettable: the
// erasure ledger (forgettable.Ledger: erasures and their completions,
// legal holds, re-admissions, the erasure proofs and the audit_log rows of
// key rotations and reapplied erasures) and the protection policies
// (forgettable.Policies, each change committed with its audit_log row).
//
// Its tables come with the migrations (migrations/002_subjects.sql and
// later). The event store's own statements read the erasure ledger too —
// an append is fenced by it, a read marks the references it finds erased —
// but they stay in eventstore/postgres, which knows nothing of this
// package: the two meet only in the schema.
//
// Changes are announced with NOTIFY (ErasureChannel, PolicyChannel) in the
// transaction that makes them; Ledger.Listen hears every process's.
package postgres
