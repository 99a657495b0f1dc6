package ratelimittest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisAddr is where [Redis] connects when REDIS_ADDR is unset.
const DefaultRedisAddr = "127.0.0.1:6379"

// RedisOptions returns the client options tests use for a Redis at addr:
// the settings a rate limit store wants (context deadlines honoured, no
// retries of non-idempotent scripts, a small pool wait), with read and
// write timeouts of one second, generous enough for a loaded test machine.
// Callers may change the result before passing it to redis.NewClient.
func RedisOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		PoolTimeout:           time.Second,
		MaxRetries:            -1,
		DisableIdentity:       true,
	}
}

// Redis returns a client of the Redis at REDIS_ADDR (default
// [DefaultRedisAddr]), closed when the test ends. When no Redis answers
// within two seconds it skips the test, or fails it if the environment
// variable CI is "true".
func Redis(t testing.TB) redis.UniversalClient {
	t.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = DefaultRedisAddr
	}
	client := redis.NewClient(RedisOptions(addr))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("ratelimittest: no Redis at %s (REDIS_ADDR): %v", addr, err)
		}
		t.Skipf("ratelimittest: no Redis at %s (set REDIS_ADDR, or start one: redis-server --port 6379 --save '' --appendonly no): %v", addr, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// RedisAt returns a client of the Redis at addr with [RedisOptions], closed
// when the test ends. It does not check that anything answers: use it for
// addresses such as a [Proxy]'s.
func RedisAt(t testing.TB, addr string) *redis.Client {
	t.Helper()
	client := redis.NewClient(RedisOptions(addr))
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// RedisPrefix returns a key prefix unique to this call, made from the
// test's name and random bytes, such as "portcullis:test:TestX_sub:1a2b3c4d:".
// When the test ends every key under the prefix is deleted (SCAN + DEL).
// Like [Redis], it skips or fails the test when no Redis answers.
func RedisPrefix(t testing.TB) string {
	t.Helper()
	client := Redis(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "portcullis:test:" + sanitize(t.Name()) + ":" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := DeletePrefix(ctx, client, prefix); err != nil {
			t.Errorf("ratelimittest: clean up %s*: %v", prefix, err)
		}
	})
	return prefix
}

// DeletePrefix deletes every key under prefix with SCAN and DEL. On a
// cluster client it scans every master.
func DeletePrefix(ctx context.Context, client redis.UniversalClient, prefix string) error {
	del := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, escapeGlob(prefix)+"*", 512).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return err
		}
		for _, k := range keys {
			// One key per DEL: keys of different hash slots cannot share
			// a command on a cluster.
			if err := c.Del(ctx, k).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return del(ctx, c) })
	}
	return del(ctx, client)
}

// sanitize keeps a test name readable in a key but free of glob and
// hash-tag characters.
func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
			return r
		default:
			return '_'
		}
	}, name)
}

// escapeGlob escapes the characters SCAN MATCH treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
