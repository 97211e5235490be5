package api

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// databaseUnavailable reports whether err says that the database could
// not be reached or went away during the request, rather than refused it:
// a dial or network error, a connection cut short, a connection the driver
// had already closed, or PostgreSQL's own connection exceptions (SQLSTATE
// class 08), shutdowns (57P01–57P03), "too many connections" (53300), and
// a read-only transaction (25006): a server in recovery or being promoted,
// which a failover hands writes to for a moment before it accepts them.
// The HTTP layer does not import the driver: it knows its errors by the
// interfaces they implement (SQLState, SafeToRetry) and by the network
// errors they wrap. Key store errors are matched before this one (they
// wrap keystore.ErrUnavailable), so a network error here is the
// database's.
func databaseUnavailable(err error) bool {
	var state interface{ SQLState() string }
	if errors.As(err, &state) {
		c := state.SQLState()
		return strings.HasPrefix(c, "08") || c == "57P01" || c == "57P02" || c == "57P03" || c == "53300" || c == "25006"
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	// The driver marks errors that happened before anything reached the
	// server (a connection it had already closed, a failed connect).
	var retry interface{ SafeToRetry() bool }
	return errors.As(err, &retry) && retry.SafeToRetry()
}
