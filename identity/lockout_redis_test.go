package identity

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

// TestRedisLockoutShared runs two authenticators (two replicas) on one
// Redis, a single node and a cluster: failures on either count toward one
// block.
func TestRedisLockoutShared(t *testing.T) {
	t.Run("node", func(t *testing.T) { testRedisLockoutShared(t, ratelimittest.Redis(t)) })
	t.Run("cluster", func(t *testing.T) {
		client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ratelimittest.Cluster(t), ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = client.Close() })
		testRedisLockoutShared(t, client)
	})
}

func testRedisLockoutShared(t *testing.T, client redis.UniversalClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "portcullis:test:lockout:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() { _ = ratelimittest.DeletePrefix(context.Background(), client, prefix) })
	var found atomic.Int64
	replica := func() *Authenticator {
		return NewAuthenticator(&Options{
			Providers: []Provider{headerProvider("pa", "a", "alice")},
			Lockout: NewLockout(LockoutOptions{MaxFailures: 4, Window: time.Minute, Block: 2 * time.Minute,
				Store: NewRedisLockoutStore(client, prefix, time.Second)}),
		})
	}
	r1, r2 := replica(), replica()
	try := func(a *Authenticator, cred string) error {
		_, err := a.Authenticate(ctx, &Request{SourceAddress: "198.51.100.9", Headers: map[string]string{"a": cred}})
		return err
	}
	locked := func(err error) bool {
		le, ok := err.(*LockedError)
		return ok && le.RetryAfter > time.Minute && le.RetryAfter <= 2*time.Minute
	}
	// Four failures, alternating replicas, count together: the replica
	// that counts the fourth blocks the address at once.
	for i := range 4 {
		a := r1
		if i%2 == 1 {
			a = r2
		}
		_ = try(a, "bad")
	}
	if err := try(r2, "alice"); !locked(err) {
		t.Fatalf("the replica that saw the 4th failure: %v, want locked out", err)
	}
	// The other replica learns of the block with its next failure (Blocked
	// never waits on Redis), and from then on refuses too.
	if err := try(r1, "bad"); locked(err) {
		t.Fatal("r1 knew of the block without a failure of its own")
	}
	if err := try(r1, "alice"); !locked(err) {
		t.Fatalf("r1 after its own failure: %v, want locked out", err)
	}
	// Every key expires: on a cluster, look on every master.
	check := func(ctx context.Context, c redis.Cmdable) error {
		keys, err := c.Keys(ctx, prefix+"*").Result()
		for _, k := range keys {
			if ttl := c.PTTL(ctx, k).Val(); ttl <= 0 {
				t.Errorf("key %s has no TTL (%v)", k, ttl)
			}
		}
		found.Add(int64(len(keys)))
		return err
	}
	var err error
	if cc, ok := client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return check(ctx, c) })
	} else {
		err = check(ctx, client)
	}
	if err != nil {
		t.Fatal(err)
	}
	if found.Load() == 0 {
		t.Error("no lockout key in Redis")
	}
}
