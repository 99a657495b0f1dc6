package policy

import (
	"crypto/sha256"
	"sync"
)

// decisionCache holds decisions by footprint key (see footprint.go), for
// one compiled policy: a reload starts an empty one. It is bounded; when a
// shard is full an arbitrary entry makes room (Go's map iteration order),
// which keeps it free of bookkeeping on the hit path and of goroutines.
type decisionCache struct {
	shards [16]cacheShard
	per    int // entries per shard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]Decision
}

func newDecisionCache(size int) *decisionCache {
	c := &decisionCache{per: max(size/len(decisionCache{}.shards), 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]Decision)
	}
	return c
}

func (c *decisionCache) shard(k *[sha256.Size]byte) *cacheShard {
	return &c.shards[k[0]%byte(len(c.shards))]
}

func (c *decisionCache) get(k [sha256.Size]byte) (Decision, bool) {
	s := c.shard(&k)
	s.mu.RLock()
	d, ok := s.m[k]
	s.mu.RUnlock()
	return d, ok
}

func (c *decisionCache) put(k [sha256.Size]byte, d Decision) {
	s := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.per {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[k] = d
}
