package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// examples are the commands that the banner of "lethe-dev run" suggests;
// LETHE_URL and the tokens are exported just above them, after a cd to the
// checkout's root directory (they name files relative to it). The seed's
// lead stream is loaded before the banner (loadSeedLead). Add API calls
// here as they appear.
const examples = `# The seed's lead, stream lead-12, is loaded: 7 events, with casey's name and
# phone number encrypted under her own key. Its state at version 2 (Casey David,
# 555-2951, a follow-up on May 27), then at version 6 (converted):
curl -s "$LETHE_URL/v1/streams/lead-12/state?version=2" -H "Authorization: Bearer $LETHE_TOKEN"
curl -s "$LETHE_URL/v1/streams/lead-12/state?version=6" -H "Authorization: Bearer $LETHE_TOKEN"

# A reader without pii-reader sees her name and phone as null, "restricted"
curl -s "$LETHE_URL/v1/streams/lead-12/state" -H "Authorization: Bearer $LETHE_READER_TOKEN"

# The history: every name and phone number the lead ever had
curl -s "$LETHE_URL/v1/streams/lead-12/history" -H "Authorization: Bearer $LETHE_TOKEN"

# Casey's access export (GDPR Art. 15/20), before the erasure: her events,
# her fields decrypted; after it, 410 subject-gone with the erasure's id
curl -s "$LETHE_URL/v1/subjects/casey.davis@example.com/export" -H "Authorization: Bearer $LETHE_ADMIN_TOKEN"

# Erase casey (GDPR Art. 17): the receipt; then the state again: the story
# stays (contacted twice, ordered, converted), her fields are "forgotten"
curl -s -X POST "$LETHE_URL/v1/subjects/casey.davis@example.com/erase" \
  -H "Authorization: Bearer $LETHE_ADMIN_TOKEN" -H 'Content-Type: application/json' \
  -d '{"legalBasis": "GDPR Art. 17(1)(a)", "reason": "customer request"}'
curl -s "$LETHE_URL/v1/streams/lead-12/state" -H "Authorization: Bearer $LETHE_TOKEN"
curl -s "$LETHE_URL/v1/streams/lead-12/events" -H "Authorization: Bearer $LETHE_TOKEN"

# How lead-12 got there: this append, which make run sent already. Sending it
# again is a safe retry (200) until casey is erased; after that it is
# 409 subject-erased, by design
curl -s -X POST "$LETHE_URL/v1/streams/lead-12/events" -H "Authorization: Bearer $LETHE_TOKEN" \
  -H 'Content-Type: application/json' -d @docs/examples/lead-12.json

# Follow the global log live (Server-Sent Events; Ctrl-C to stop)
curl -sN "$LETHE_URL/v1/subscribe" -H "Authorization: Bearer $LETHE_READER_TOKEN"

# Is Lethe up? Ready (PostgreSQL, schema, Vault)?
curl -s "$LETHE_URL/healthz"
curl -s "$LETHE_URL/readyz"

# The compliance view (auditor): every append, disclosure, erasure, hold and
# token change, with a count and SHA-256 on the last line; the erasures with
# their deadline, key check and the read models they reached
curl -s "$LETHE_URL/v1/audit/export" -H "Authorization: Bearer $LETHE_AUDITOR_TOKEN"
curl -s "$LETHE_URL/v1/audit/export?format=csv&kind=erasure.requested,erasure.completed" -H "Authorization: Bearer $LETHE_AUDITOR_TOKEN"
curl -s "$LETHE_URL/v1/erasures" -H "Authorization: Bearer $LETHE_AUDITOR_TOKEN"

# The admin commands, with this deployment's settings:
. .lethe/env
bin/lethe policy put --type lead-initialized --paths /first-name,/last-name,/phone-number
bin/lethe token list
bin/lethe verify                                   # every stream's hash chain holds
bin/lethe audit export > audit.ndjson && bin/lethe verify --file audit.ndjson
bin/lethe erasures list                             # then: bin/lethe erasures get --id ID

# The lead as a Go aggregate (load, decide, append, conflicts): examples/lead
`

// printBanner prints what "lethe-dev run" started, where its data is,
// the demo tokens to export and the examples to try, with paths relative
// to the checkout's root directory where they are inside it.
func printBanner(w io.Writer, url string, st localState, dbURL, vaultAddr, root, stateDir, pgDir string) {
	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nLethe is running at %s\n\n", url)
	fmt.Fprintf(&b, "  PostgreSQL   %s\n", dbURL)
	fmt.Fprintf(&b, "  Vault        %s (unseal key and root token in %s)\n\n", vaultAddr, rel(filepath.Join(stateDir, "vault", "init.json")))
	fmt.Fprintf(&b, "This is a local-only setup for trying Lethe, not for production: Lethe\n")
	if strings.HasPrefix(pgDir, stateDir+string(filepath.Separator)) {
		fmt.Fprintf(&b, "uses Vault's root token, and all data stays in %s/.\n\n", rel(stateDir))
	} else {
		fmt.Fprintf(&b, "uses Vault's root token, and all data stays in %s/ and %s/.\n\n", rel(stateDir), pgDir)
	}
	fmt.Fprintf(&b, "Try it: copy and paste into another terminal. Run the commands from the\n")
	fmt.Fprintf(&b, "checkout's root directory: they use docs/examples/lead-12.json and .lethe/env.\n\n")
	fmt.Fprintf(&b, "  cd %s\n", shellQuote(root))
	fmt.Fprintf(&b, "  export LETHE_URL=%s\n", url)
	fmt.Fprintf(&b, "  export LETHE_ADMIN_TOKEN=%s   # admin: erase, holds, policies, tokens\n", st.AdminToken)
	fmt.Fprintf(&b, "  export LETHE_TOKEN=%s   # writer + pii-reader\n", st.Token)
	fmt.Fprintf(&b, "  export LETHE_READER_TOKEN=%s   # reader: personal data hidden\n", st.ReaderToken)
	fmt.Fprintf(&b, "  export LETHE_AUDITOR_TOKEN=%s   # auditor: audit export, erasure receipts\n", st.AuditorToken)
	b.WriteString("\n")
	for _, line := range strings.Split(strings.TrimRight(examples, "\n"), "\n") {
		if line == "" {
			b.WriteString("\n")
		} else {
			b.WriteString("  " + line + "\n")
		}
	}
	b.WriteString("\nCtrl-C stops everything.\n\n")
	io.WriteString(w, b.String())
}

// shellQuote quotes s for a POSIX shell, unless it needs no quotes.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
