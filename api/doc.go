// Package api is Lethe's HTTP API, built with go-chi. It depends on the
// domain packages and on interfaces it declares (Events, Subjects,
// PolicyStore, Subscriber, TokenStore, AccessLog, AuditTrail,
// ErasureLedger, StateLoader, ReadModels), never on pgx or Vault: the
// composition root (internal/app) wires the adapters in. The JSON
// documents are package wire's; the domain's values are converted at the
// edge (toWire, ErasureSummary, ProjectionStatuses).
//
// Errors are RFC 9457 problem+json documents with a stable type URI. Every
// error answer goes through one mapping, problemOf in problem.go: plain
// answers, version conflicts (with the events since), subject-gone (with
// the erasure) and the error events of subscriptions. A 500 says nothing
// internal; the details go to the log with the request id.
package api
