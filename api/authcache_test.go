package api

import (
	"testing"
	"time"
)

// A token lookup that started before a revocation is not cached: it may
// have read the token just before it was revoked, and would otherwise
// keep it working for the cache's TTL.
func TestAuthCacheRevocationWinsOverALookupInFlight(t *testing.T) {
	c := newAuthCache(time.Minute, 10)
	hash := HashToken("lethe_x")
	gen := c.generation() // a lookup starts
	c.dropToken("t-1")    // the token is revoked meanwhile
	c.put(hash, Principal{TokenID: "t-1"}, gen)
	if _, ok := c.get(hash); ok {
		t.Error("a lookup older than the revocation was cached")
	}
	c.put(hash, Principal{TokenID: "t-1"}, c.generation())
	if _, ok := c.get(hash); !ok {
		t.Error("a fresh lookup was not cached")
	}
}
