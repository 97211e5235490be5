// Package api is Lethe's HTTP API, built with go-chi. It depends on the
// domain packages' interfaces only, never on pgx or Vault: cmd/lethe wires
// the adapters in.
//
// Errors are RFC 9457 problem+json documents with a stable type URI (see
// problem.go); a 500 says nothing internal, and the details go to the log
// with the request id.
package api
