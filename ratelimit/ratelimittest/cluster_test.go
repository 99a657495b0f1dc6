package ratelimittest

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestCluster checks that the private cluster is one: three masters own
// the slots, keys of different slots land on different masters, and a
// command spanning slots is refused.
func TestCluster(t *testing.T) {
	if strings.TrimSpace(os.Getenv("REDIS_CLUSTER_ADDRS")) != "" {
		t.Skip("REDIS_CLUSTER_ADDRS names an existing cluster")
	}
	addrs := Cluster(t)
	if len(addrs) != clusterMasters {
		t.Fatalf("%d addresses, want %d", len(addrs), clusterMasters)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs[:1], MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	var masters atomic.Int32
	if err := c.ForEachMaster(ctx, func(context.Context, *redis.Client) error { masters.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if masters.Load() != clusterMasters {
		t.Errorf("%d masters found from one seed, want %d", masters.Load(), clusterMasters)
	}
	owners := map[string]bool{}
	for _, k := range []string{"{a}", "{b}", "{c}", "{d}", "{e}", "{f}"} {
		if err := c.Set(ctx, k, 1, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		n, err := c.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		owners[n.Options().Addr] = true
	}
	if len(owners) < 2 {
		t.Errorf("six hash tags all on %v", owners)
	}
	if err := c.Do(ctx, "mset", "{a}x", 1, "{b}x", 1).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("MSET across slots: %v, want CROSSSLOT", err)
	}
}
