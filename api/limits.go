package api

import (
	"sync"
)

// What one writer's request may make the server, Vault and the read models
// do is bounded (Limits), so that no append or read costs far more than
// its size suggests:
//
//   - leaves per event and per append (MaxLeavesPerEvent,
//     MaxLeavesPerAppend): the lookup index writes one row per leaf;
//   - data subjects per append (MaxSubjectsPerAppend): each new one is a
//     key created in Vault before the append is tried;
//   - bytes per page (MaxPageBytes): a read's memory, whatever its limit;
//   - concurrent subscriptions per token (MaxSubscriptionsPerToken).

// countLeaves returns the number of scalar values (strings that are not
// object keys, numbers, true, false and null) of a JSON text, which must
// be valid JSON: the leaves the lookup index would index (nulls included,
// so the count is an upper bound). It reads the bytes once and allocates
// nothing.
func countLeaves(b []byte) int {
	var stack []byte // '{' or '[' per open container; grows only with depth
	var small [32]byte
	stack = small[:0]
	leaves, key := 0, false // key: the next string is an object key
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case ' ', '\t', '\n', '\r', ':':
		case '{':
			stack, key = append(stack, '{'), true
		case '[':
			stack, key = append(stack, '['), false
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			key = false
		case ',':
			key = len(stack) > 0 && stack[len(stack)-1] == '{'
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if !key {
				leaves++
			}
			key = false
		default: // a number, true, false or null
			for i+1 < len(b) && !isDelimiter(b[i+1]) {
				i++
			}
			leaves++
			key = false
		}
	}
	return leaves
}

func isDelimiter(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// subscriptionSlots counts each token's open subscriptions in this
// process.
type subscriptionSlots struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newSubscriptionSlots(max int) *subscriptionSlots {
	return &subscriptionSlots{max: max, open: map[string]int{}}
}

// take reserves a slot for token, or reports false if it has max open.
// The caller calls release when the subscription ends.
func (s *subscriptionSlots) take(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[token] >= s.max {
		return false
	}
	s.open[token]++
	return true
}

func (s *subscriptionSlots) release(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[token]--; s.open[token] <= 0 {
		delete(s.open, token)
	}
}
