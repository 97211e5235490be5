package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/keystore"
)

// failingCatchUp is an event store whose catch-up read fails with err:
// the subscription has answered 200 already, so the failure arrives as an
// error event.
type failingCatchUp struct {
	api.Events
	err error
}

func (f failingCatchUp) ReadAll(context.Context, eventstore.ReadAllOptions, forgettable.Access) (forgettable.Page, error) {
	return forgettable.Page{}, f.err
}

// subscriptionError subscribes to $all on a server whose catch-up fails
// with err, and returns the problem of the error event that ends the
// stream.
func subscriptionError(t *testing.T, err error) (p wire.Problem, retried bool) {
	t.Helper()
	hs := MustOpenServer(t, api.Options{Tokens: piiReaderTokens{}, Events: failingCatchUp{err: err}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/v1/subscribe", nil)
	req.Header.Set("Authorization", "Bearer anything")
	resp, rerr := http.DefaultClient.Do(req)
	if rerr != nil {
		t.Fatal(rerr)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var seen []string
	inError := false
	for sc.Scan() {
		line := sc.Text()
		seen = append(seen, line)
		if line == "event: error" {
			inError = true
			continue
		}
		if inError && strings.HasPrefix(line, "retry: ") {
			retried = true
			continue
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok && inError {
			if err := json.Unmarshal([]byte(data), &p); err != nil {
				t.Fatalf("error event data %q: %v", data, err)
			}
			return p, retried
		}
	}
	t.Fatalf("no error event; the stream was %q", seen)
	return p, false
}

// A subscription ended by PostgreSQL going away is a 503 error event, as
// before the error mapping was unified: the outage is the server's
// dependency failing, to be retried with Last-Event-ID, never a 500
// (the non-negotiable: a PostgreSQL or Vault outage is a 503). The unified
// mapping now sends 500 "internal".
func TestSubscriptionEndedByPostgresOutageIs503(t *testing.T) {
	t.Parallel()
	// What the driver wraps when PostgreSQL refuses connections.
	outage := fmt.Errorf("read all: failed to connect to `user=lethe database=lethe`: %w",
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	p, retried := subscriptionError(t, outage)
	if !retried {
		t.Error("the error event of an outage has no retry field (the reconnection delay)")
	}
	if p.Status != http.StatusServiceUnavailable || p.Type != api.ProblemTypeBase+"database-unavailable" {
		t.Errorf("error event of a subscription whose database went away: status %d (%s), want 503 database-unavailable", p.Status, p.Type)
	}
	if !strings.Contains(p.Detail, "Last-Event-ID") {
		t.Errorf("error event detail %q: want it to say to reconnect with Last-Event-ID", p.Detail)
	}
}

// A subscription ended by Vault going away says what a subscriber should
// do (reconnect later with Last-Event-ID), not the append's "nothing was
// written", which means nothing to a reader.
func TestSubscriptionEndedByVaultOutageSaysReconnect(t *testing.T) {
	t.Parallel()
	p, _ := subscriptionError(t, fmt.Errorf("open: %w", keystore.ErrUnavailable))
	if p.Status != http.StatusServiceUnavailable || p.Type != api.ProblemTypeBase+"key-store-unavailable" {
		t.Errorf("error event: %d %s, want 503 key-store-unavailable", p.Status, p.Type)
	}
	if strings.Contains(p.Detail, "nothing was written") {
		t.Errorf("error event detail %q: a subscription writes nothing; it should say to reconnect later", p.Detail)
	}
}
