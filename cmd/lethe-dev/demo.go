package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
)

// The seed's lead stream, loaded by "lethe-dev run".
const (
	seedLeadStream = "lead-12"
	seedLeadFile   = "docs/examples/lead-12.json" // relative to the checkout's root
)

// ensureDemoTokens makes the demo tokens through the API with the admin
// token, unless the state's still work.
func ensureDemoTokens(ctx context.Context, url string, st *localState) error {
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, tk := range []struct {
		p     *string
		name  string
		roles []string
	}{
		{&st.Token, "make-run-demo", []string{"writer", "pii-reader"}},
		{&st.ReaderToken, "make-run-demo-reader", []string{"reader"}},
		{&st.AuditorToken, "make-run-demo-auditor", []string{"auditor"}},
	} {
		ok, err := demoTokenValid(ctx, hc, url, *tk.p)
		if err != nil {
			return err
		}
		if !ok {
			if *tk.p, err = createDemoToken(ctx, hc, url, st.AdminToken, tk.name, tk.roles...); err != nil {
				return err
			}
		}
	}
	return nil
}

// demoTokenValid reports whether Lethe at url knows token: false for an
// empty, unknown or revoked one, which is to be made anew.
func demoTokenValid(ctx context.Context, hc *http.Client, url, token string) (bool, error) {
	if token == "" {
		return false, nil
	}
	// A route that discloses no personal data (a probe must not read
	// anyone's) and that both demo tokens may call.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/analytics/lead", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return false, nil // unknown or revoked: make a new one
	case http.StatusOK:
		return true, nil
	}
	return false, fmt.Errorf("checking a demo token: GET /v1/analytics/lead answered %s", resp.Status)
}

// createDemoToken makes a token with name and roles through the API with
// the admin token, and returns it.
func createDemoToken(ctx context.Context, hc *http.Client, url, adminToken, name string, roles ...string) (string, error) {
	body, _ := json.Marshal(map[string]any{"name": name, "roles": roles})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/tokens", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var t struct {
		Token string `json:"token"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &t) != nil || t.Token == "" {
		return "", fmt.Errorf("POST /v1/tokens: %s %s", resp.Status, b)
	}
	return t.Token, nil
}

// loadSeedLead appends the seed's lead stream (seedLeadFile) with the demo
// writer token, unless the stream exists, and says in one progress line
// what happened. A failure is reported, not fatal: the banner's append
// loads it too.
func loadSeedLead(ctx context.Context, url, token, root string, progress io.Writer) {
	msg, err := appendSeedLead(ctx, url, token, root)
	if err != nil {
		msg = fmt.Sprintf("could not load the seed's lead stream %s: %v (the append in the banner loads it)", seedLeadStream, err)
	}
	fmt.Fprintf(progress, "%s\n", msg)
}

// appendSeedLead appends the seed's lead stream with token and returns
// the progress line saying what happened; an existing stream, loaded
// before or erased since, is no error.
func appendSeedLead(ctx context.Context, url, token, root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, seedLeadFile))
	if err != nil {
		return "", err
	}
	req, err := wire.Decode[wire.AppendRequest](b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", seedLeadFile, err)
	}
	c := client.New(url, token, &http.Client{Timeout: 30 * time.Second})
	res, err := c.Append(ctx, seedLeadStream, req.ExpectedVersion, req.Events...)
	switch {
	case err == nil && res.Duplicate:
		return fmt.Sprintf("the seed's lead stream %s is loaded already", seedLeadStream), nil
	case err == nil:
		return fmt.Sprintf("loaded the seed's lead stream %s: %d events from %s", seedLeadStream, len(req.Events), seedLeadFile), nil
	case client.ProblemType(err) == "wrong-expected-version":
		return fmt.Sprintf("the seed's lead stream %s is there from a previous run: not loaded again", seedLeadStream), nil
	case client.ProblemType(err) == "subject-erased":
		return fmt.Sprintf("the seed's lead stream %s is there from a previous run, casey erased (delete .lethe/ to start from scratch)", seedLeadStream), nil
	}
	return "", fmt.Errorf("POST /v1/streams/%s/events: %w", seedLeadStream, err)
}
