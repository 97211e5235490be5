package vault

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-store/lethe/keystore"
)

func testRef(i int) keystore.Ref {
	return keystore.Ref(fmt.Sprintf("%064x", i))
}

func testKeys(t *testing.T, ref keystore.Ref, current int) *subjectKeys {
	t.Helper()
	materials := map[int][]byte{}
	for v := 1; v <= current; v++ {
		m := make([]byte, keystore.KeySize)
		m[0] = byte(v)
		materials[v] = m
	}
	sk, err := newSubjectKeys(ref, current, materials)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func TestCacheLRU(t *testing.T) {
	c := newCache(2, time.Hour)
	for i := range 3 {
		c.put(c.ticket(), testKeys(t, testRef(i), 1))
	}
	if c.len() != 2 {
		t.Fatalf("len = %d, want 2", c.len())
	}
	if _, ok := c.get(testRef(0)); ok {
		t.Fatal("the least recently used entry was not evicted")
	}
	// Use 1, add 3: 2 goes.
	if _, ok := c.get(testRef(1)); !ok {
		t.Fatal("entry 1 missing")
	}
	c.put(c.ticket(), testKeys(t, testRef(3), 1))
	if _, ok := c.get(testRef(2)); ok {
		t.Fatal("entry 2 should have been evicted")
	}
	for _, i := range []int{1, 3} {
		if _, ok := c.get(testRef(i)); !ok {
			t.Fatalf("entry %d missing", i)
		}
	}
}

func TestCacheTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newCache(10, time.Minute)
	c.now = func() time.Time { return now }
	c.put(c.ticket(), testKeys(t, testRef(1), 1))
	now = now.Add(59 * time.Second)
	if _, ok := c.get(testRef(1)); !ok {
		t.Fatal("entry expired early")
	}
	now = now.Add(time.Second)
	if _, ok := c.get(testRef(1)); ok {
		t.Fatal("entry did not expire")
	}
	if c.len() != 0 {
		t.Fatal("an expired entry was kept")
	}
}

func TestCacheInvalidateBeatsRacingPut(t *testing.T) {
	c := newCache(10, time.Hour)
	ref := testRef(1)
	ticket := c.ticket() // a read starts
	c.remove(ref)        // Destroy or Invalidate meanwhile
	c.put(ticket, testKeys(t, ref, 1))
	if _, ok := c.get(ref); ok {
		t.Fatal("a read that started before an invalidation put its keys back")
	}
	c.put(c.ticket(), testKeys(t, ref, 1))
	if _, ok := c.get(ref); !ok {
		t.Fatal("a read after the invalidation was not cached")
	}
}

func TestCacheKeepsNewerKeys(t *testing.T) {
	c := newCache(10, time.Hour)
	ref := testRef(1)
	c.put(c.ticket(), testKeys(t, ref, 3))
	c.put(c.ticket(), testKeys(t, ref, 2))
	if sk, _ := c.get(ref); sk.current != 3 {
		t.Fatalf("current = %d, want 3", sk.current)
	}
}

func TestCacheConcurrent(t *testing.T) {
	c := newCache(50, time.Hour)
	keys := make([]*subjectKeys, 100)
	for i := range keys {
		keys[i] = testKeys(t, testRef(i), 1)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				sk := keys[(g*7+i)%100]
				ref := sk.ref
				switch i % 3 {
				case 0:
					c.put(c.ticket(), sk)
				case 1:
					c.get(ref)
				default:
					c.remove(ref)
				}
			}
		})
	}
	wg.Wait()
	if c.len() > 50 {
		t.Fatalf("len = %d, want at most 50", c.len())
	}
}

func TestSubjectKeysRoundTrip(t *testing.T) {
	sk := testKeys(t, testRef(1), 3)
	data := sk.data()
	if data["current"] != "3" || len(data) != 4 {
		t.Fatalf("data = %v", data)
	}
	got, err := parseSubjectKeys(sk.ref, data)
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 3; v++ {
		if got.keys[v].Material() != sk.keys[v].Material() || got.keys[v].Version() != v {
			t.Fatalf("version %d differs after a round trip", v)
		}
	}
	if got.currentKey().Version() != 3 {
		t.Fatal("current key is not version 3")
	}
}

func TestParseSubjectKeysErrorsHideMaterial(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	short := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	for _, data := range []map[string]any{
		{},
		{"current": "0", "k1": key},
		{"current": 1, "k1": key},
		{"current": "1"},
		{"current": "1", "k1": short},
		{"current": "1", "k1": "not base64!"},
		{"current": "1", "k1": key, "k2": key},
		{"current": "1", "k1": key, "x": key},
		{"current": "1", "k1": key, "k0": key},
		{"current": "1", "k1": 7},
	} {
		_, err := parseSubjectKeys(testRef(1), data)
		if !errors.Is(err, errMalformed) {
			t.Fatalf("parse %v: err = %v, want errMalformed", data, err)
		}
		if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), short) {
			t.Fatalf("parse error shows key bytes: %v", err)
		}
	}
}
