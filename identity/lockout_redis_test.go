package identity

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

// TestRedisLockoutShared runs two authenticators (two replicas) on one
// Redis: failures on either count toward one block.
func TestRedisLockoutShared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := ratelimittest.Redis(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "portcullis:test:lockout:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		keys, _ := client.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			client.Del(context.Background(), keys...)
		}
	})
	replica := func() *Authenticator {
		return NewAuthenticator(&Options{
			Providers: []Provider{headerProvider("pa", "a", "alice")},
			Lockout: NewLockout(LockoutOptions{MaxFailures: 4, Window: time.Minute, Block: 2 * time.Minute,
				Store: NewRedisLockoutStore(client, prefix, time.Second)}),
		})
	}
	r1, r2 := replica(), replica()
	for i := range 4 {
		a := r1
		if i%2 == 1 {
			a = r2
		}
		_, _ = a.Authenticate(ctx, &Request{SourceAddress: "198.51.100.9", Headers: map[string]string{"a": "bad"}})
	}
	_, err := r1.Authenticate(ctx, &Request{SourceAddress: "198.51.100.9", Headers: map[string]string{"a": "alice"}})
	le, ok := err.(*LockedError)
	if !ok || le.RetryAfter <= time.Minute || le.RetryAfter > 2*time.Minute {
		t.Fatalf("after 4 failures over two replicas: %v", err)
	}
	keys, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if ttl := client.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("key %s has no TTL (%v)", k, ttl)
		}
	}
}
