// Package postgres implements eventstore.Store on PostgreSQL 13+ with pgx.
//
// All events live in one table (migrations/001_events.sql). Appends are a
// single SQL statement: the stream's current version is read, the expected
// version checked and the rows inserted in one round trip, and the primary
// key on (stream_id, version) decides races. Global positions are derived
// from the appending transaction's id, and $all readers stop at the
// visibility horizon (pg_snapshot_xmin), which is what makes "read after
// position P" gap-free without serialising writers: see
// docs/architecture.md.
//
// Every event stores its link in its stream's hash chain (eventstore.ChainLink
// over eventstore.ContentDigest): the append computes it from the stream's
// head link in the same statement (COPY: in Go, from the head read with the
// version). VerifyChains recomputes every chain from the stored bytes, and
// LinksAt looks up the heads that exports quote (`lethe verify`).
//
// Subscriptions are woken by LISTEN/NOTIFY on the channel "lethe_events"; a
// store sends one coalesced NOTIFY after its appends commit (never inside
// the append transaction, where NOTIFY would serialise all commits), and a
// slow safety poll covers lost notifications.
package postgres
