package vault

import (
	"container/list"
	"sync"
	"time"

	"github.com/lethe-store/lethe/keystore"
)

// subjectKeys is every version of one subject's key, as read from (or
// written to) Vault at one moment.
type subjectKeys struct {
	ref     keystore.Ref
	current int
	keys    map[int]keystore.Key // version → key; 1..current
	// kvVersion is the KV v2 version of the secret these keys came from:
	// the check-and-set value for the next write.
	kvVersion int
}

func (sk *subjectKeys) currentKey() keystore.Key { return sk.keys[sk.current] }

// cache is a least-recently-used map of subjects' keys, bounded in size,
// whose entries expire after a time to live. It is safe for concurrent use.
//
// A read that started before an invalidation must not put back what the
// invalidation removed: callers take a ticket (the invalidation epoch)
// before they read Vault and put with it; a put whose ticket is older than
// the latest invalidation is dropped.
type cache struct {
	size int
	ttl  time.Duration
	now  func() time.Time

	mu    sync.Mutex
	ll    *list.List // front: most recently used; values are *cacheEntry
	items map[keystore.Ref]*list.Element
	epoch uint64
}

type cacheEntry struct {
	keys    *subjectKeys
	expires time.Time
}

func newCache(size int, ttl time.Duration) *cache {
	return &cache{
		size:  size,
		ttl:   ttl,
		now:   time.Now,
		ll:    list.New(),
		items: make(map[keystore.Ref]*list.Element),
	}
}

// get returns ref's keys if they are cached and fresh.
func (c *cache) get(ref keystore.Ref) (*subjectKeys, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[ref]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.removeElement(el)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.keys, true
}

// ticket returns the current invalidation epoch, to pass to put.
func (c *cache) ticket() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// put caches keys unless an invalidation happened since ticket was taken.
// A put never replaces newer keys (a higher current version) by older
// ones.
func (c *cache) put(ticket uint64, keys *subjectKeys) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ticket != c.epoch {
		return
	}
	expires := c.now().Add(c.ttl)
	if el, ok := c.items[keys.ref]; ok {
		e := el.Value.(*cacheEntry)
		if e.keys.current > keys.current {
			return
		}
		e.keys, e.expires = keys, expires
		c.ll.MoveToFront(el)
		return
	}
	c.items[keys.ref] = c.ll.PushFront(&cacheEntry{keys: keys, expires: expires})
	for c.ll.Len() > c.size {
		c.removeElement(c.ll.Back())
	}
}

// remove drops ref's entry and makes every put with an earlier ticket a
// no-op.
func (c *cache) remove(ref keystore.Ref) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if el, ok := c.items[ref]; ok {
		c.removeElement(el)
	}
}

// clear drops every entry and makes every put with an earlier ticket a
// no-op.
func (c *cache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.ll.Init()
	clear(c.items)
}

func (c *cache) removeElement(el *list.Element) {
	e := c.ll.Remove(el).(*cacheEntry)
	delete(c.items, e.keys.ref)
}

// len returns the number of entries, fresh or not.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
