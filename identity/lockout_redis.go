package identity

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// failScript counts a failure and starts the window's expiry with the first
// one, in one round trip, so no counter lives without a TTL.
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

// RedisLockoutStore keeps lockout counters in Redis, so that every replica
// sees the same failures and blocks.
type RedisLockoutStore struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
}

// NewRedisLockoutStore returns a store using client; keys start with
// prefix (default "portcullis:lockout:") and every call is bounded by
// timeout (default 50ms).
func NewRedisLockoutStore(client redis.UniversalClient, prefix string, timeout time.Duration) *RedisLockoutStore {
	if prefix == "" {
		prefix = "portcullis:lockout:"
	}
	if timeout <= 0 {
		timeout = 50 * time.Millisecond
	}
	return &RedisLockoutStore{client: client, prefix: prefix, timeout: timeout}
}

// Fail implements LockoutStore.
func (s *RedisLockoutStore) Fail(ctx context.Context, key string, window time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n, err := failScript.Run(ctx, s.client, []string{s.prefix + "n:" + key}, window.Milliseconds()).Int()
	return n, err
}

// Block implements LockoutStore.
func (s *RedisLockoutStore) Block(ctx context.Context, key string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.client.Set(ctx, s.prefix+"b:"+key, 1, d).Err()
}

// BlockedFor implements LockoutStore.
func (s *RedisLockoutStore) BlockedFor(ctx context.Context, key string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	d, err := s.client.PTTL(ctx, s.prefix+"b:"+key).Result()
	if err != nil || d < 0 {
		return 0, err
	}
	return d, nil
}
