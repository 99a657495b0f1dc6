// Package cache is the bounded map behind the hot-path caches (decisions,
// identity tokens, verified identity tokens): lookups take a read lock, and
// when the map is full an insert evicts an arbitrary entry (Go's map
// iteration order), so it keeps no recency bookkeeping and starts no
// goroutine. Values that expire carry their own deadline.
package cache

import "sync"

// Map is a map of at most a fixed number of entries, safe for concurrent use.
type Map[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]V
	max int
}

// New returns an empty Map of at most size entries (at least 1).
func New[K comparable, V any](size int) *Map[K, V] {
	return &Map[K, V]{m: make(map[K]V), max: max(size, 1)}
}

// Get returns the value stored under k.
func (c *Map[K, V]) Get(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

// Put stores v under k, evicting an arbitrary entry when the map is full.
func (c *Map[K, V]) Put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
}

// Len is the number of entries.
func (c *Map[K, V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
