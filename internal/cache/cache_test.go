package cache

import (
	"sync"
	"testing"
)

func TestMapBound(t *testing.T) {
	c := New[int, int](32)
	for i := range 1000 {
		c.Put(i, i*2)
		if v, ok := c.Get(i); !ok || v != i*2 {
			t.Fatalf("Get(%d) right after Put: %d %v", i, v, ok)
		}
	}
	if n := c.Len(); n != 32 {
		t.Errorf("%d entries, want 32", n)
	}
	c.Put(999, 1) // replacing does not evict
	if n := c.Len(); n != 32 {
		t.Errorf("%d entries after a replace, want 32", n)
	}
	if v, _ := c.Get(999); v != 1 {
		t.Errorf("replaced value %d", v)
	}
}

func TestMapConcurrent(t *testing.T) {
	c := New[int, int](64)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				c.Put(w*10000+i, i)
				c.Get(i)
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > 64 {
		t.Errorf("%d entries, want at most 64", n)
	}
}
