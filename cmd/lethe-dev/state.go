package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// localState is .lethe/state.json: what "lethe-dev run" keeps between runs.
type localState struct {
	PostgresPort int    `json:"postgres_port"`
	VaultPort    int    `json:"vault_port"`
	AdminToken   string `json:"admin_token"`
	// The demo tokens made through the API: writer + pii-reader, reader
	// only, and auditor.
	Token        string `json:"token,omitempty"`
	ReaderToken  string `json:"reader_token,omitempty"`
	AuditorToken string `json:"auditor_token,omitempty"`
}

// loadState reads the state file; a missing one is an empty state (the
// first run).
func loadState(path string) (localState, error) {
	var st localState
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w (remove it to start over with new ports and admin token)", path, err)
	}
	return st, nil
}

// saveState writes the state file, mode 0600 (it holds the admin token),
// through a temporary file so that a crash never leaves half of it.
func saveState(path string, st localState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // WriteFile keeps an old file's mode
		return err
	}
	return os.Rename(tmp, path)
}
