// Package eventstore is Lethe's vocabulary for an append-only event store:
// streams, versions, positions, events, expected versions, the Store
// interface and the errors its implementations return.
//
// A stream holds the events of one aggregate (one "entity", for example the
// sales lead lead-12). Inside a stream every event has a version: the first
// event is version 0, the next 1, and so on, with no gaps. A stream that has
// no events yet has version NoStream (-1).
//
// Every event also has a position in the global log, "$all". Positions grow
// with commit order, are unique, and are sparse: they are not consecutive
// numbers, only ordered cursors. A reader that asks again and again for the
// events after the last position it saw never misses an event and never
// sees one twice, even when transactions commit out of order. How the
// PostgreSQL implementation guarantees that is explained in
// docs/architecture.md.
//
// Appends are atomic (all events of one call or none) and guarded by an
// ExpectedVersion (optimistic concurrency). When the guard fails, the error
// is a *WrongExpectedVersionError that carries the stream's current version
// and the events appended after the expected version, so that the caller can
// decide by its own business rules whether its change still holds.
//
// Appends are idempotent by event id: repeating an append with the same
// event ids and content succeeds without writing anything twice.
//
// Each stream's events form a hash chain over the events as stored
// (ContentDigest, ChainLink, over data and metadata in a canonical JSON
// form, AppendCanonicalJSON): ChainVerifier checks one, so that an edit
// behind the store's back is found. See docs/architecture.md "The hash
// chain".
//
// This package depends on the standard library only; the PostgreSQL
// implementation lives in eventstore/postgres.
package eventstore
