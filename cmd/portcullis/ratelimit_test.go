package main

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-mcp/portcullis/internal/config"
)

// The rate-limit client speaks RESP2 unless the URL asks for RESP3: go-redis
// would otherwise look for push notifications before every reply.
func TestRedisClientProtocol(t *testing.T) {
	for url, want := range map[string]int{
		"redis://127.0.0.1:6379/0":            2,
		"redis://127.0.0.1:6379/0?protocol=3": 3,
	} {
		c, err := redisClient(config.Redis{URL: url, Timeout: config.Duration(time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.(*redis.Client).Options().Protocol; got != want {
			t.Errorf("%s: protocol %d, want %d", url, got, want)
		}
		_ = c.Close()
	}
	c, err := redisClient(config.Redis{ClusterAddrs: []string{"127.0.0.1:7000"}, Timeout: config.Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.(*redis.ClusterClient).Options().Protocol; got != 2 {
		t.Errorf("cluster: protocol %d, want 2", got)
	}
	_ = c.Close()
}
