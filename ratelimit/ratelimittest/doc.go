// Package ratelimittest provides helpers for tests of rate limit stores and
// of the packages that use them: a connection to a real Redis ([Redis],
// [RedisAt], [RedisPrefix]), a private Redis Cluster ([Cluster]), a loopback
// TCP [Proxy] whose link can be cut to simulate a hung Redis, and a fake
// [Clock].
//
// # Redis
//
// [Redis] connects to REDIS_ADDR (default 127.0.0.1:6379). When no Redis
// answers the test is skipped, unless the environment variable CI is "true",
// in which case it fails. Tests that share one Redis keep apart by using a
// key prefix from [RedisPrefix], which is deleted when the test ends:
//
//	func TestSomething(t *testing.T) {
//		client := ratelimittest.Redis(t)
//		prefix := ratelimittest.RedisPrefix(t)
//		store, err := ratelimit.NewRedisStore(&ratelimit.RedisOptions{Client: client, Prefix: prefix})
//		// ...
//	}
//
// # Redis Cluster
//
// [Cluster] returns the addresses of REDIS_CLUSTER_ADDRS, or starts three
// redis-server processes from PATH in cluster mode on free loopback
// ports, splits the slots between them and waits until they agree. Each
// call makes its own cluster (about two seconds), stopped when the test
// ends; pass the addresses to redis.NewClusterClient.
package ratelimittest
