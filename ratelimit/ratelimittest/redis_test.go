package ratelimittest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

func TestRedisPrefix(t *testing.T) {
	client := ratelimittest.Redis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var prefix string
	t.Run("sub", func(t *testing.T) {
		prefix = ratelimittest.RedisPrefix(t)
		if other := ratelimittest.RedisPrefix(t); other == prefix {
			t.Errorf("two calls gave the same prefix %q", prefix)
		}
		if strings.ContainsAny(prefix, "{}*?[]") {
			t.Errorf("prefix %q has hash-tag or glob characters", prefix)
		}
		for _, k := range []string{"a", "b", "{c}"} {
			if err := client.Set(ctx, prefix+k, 1, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	// The subtest's cleanup deleted its keys.
	keys, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("keys left under %s: %v", prefix, keys)
	}
}
