package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"

	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/ratelimit"
)

// rateLimit is the rate-limit service a configuration describes.
type rateLimit struct {
	service *ratelimit.Service
	runs    []func(context.Context) error
}

// buildRateLimit builds the service; client is the Redis client when the
// backend is redis, else nil.
func buildRateLimit(cfg *config.Config, client redis.UniversalClient, logger *slog.Logger, mp metric.MeterProvider) (*rateLimit, error) {
	r := cfg.RateLimit
	out := &rateLimit{}
	var store ratelimit.Store
	if client != nil {
		rs, err := ratelimit.NewRedisStore(&ratelimit.RedisOptions{Client: client, Timeout: r.Redis.Timeout.Std(), Logger: logger, MeterProvider: mp})
		if err != nil {
			return nil, err
		}
		if run, ok := any(rs).(runner); ok {
			out.runs = append(out.runs, run.Run)
		}
		store = rs
	} else {
		store = ratelimit.NewMemoryStore(nil)
	}
	out.service = ratelimit.NewService(store, &ratelimit.ServiceOptions{
		FailOpen:        r.FailureMode == "allow",
		ResponseHeaders: r.ResponseHeaders,
		Logger:          logger,
		MeterProvider:   mp,
	})
	if len(r.ConfigPaths) > 0 {
		paths := make([]string, len(r.ConfigPaths))
		for i, p := range r.ConfigPaths {
			paths[i] = cfg.Path(p)
		}
		c, err := ratelimit.LoadConfig(paths)
		if err != nil {
			return nil, usageError{fmt.Errorf("ratelimit.config_paths: %w", err)}
		}
		out.service.SetConfig(c)
		out.runs = append(out.runs, func(ctx context.Context) error {
			return ratelimit.WatchConfig(ctx, paths, logger, out.service.SetConfig)
		})
	}
	return out, nil
}

// redisClient builds the client of ratelimit.redis, shared by the rate
// limit store and the lockout counters: a single node (url) or a cluster
// (cluster_addrs). Every command honours its context deadline (the store's
// redis.timeout) and is never retried: a retried script could count twice.
// It speaks RESP2 unless the URL asks for a protocol (?protocol=3): with
// RESP3, go-redis looks for push notifications before every reply, and
// Portcullis subscribes to none (9% of a ShouldRateLimit on Redis).
func redisClient(rc config.Redis) (redis.UniversalClient, error) {
	t := rc.Timeout.Std()
	if len(rc.ClusterAddrs) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: rc.ClusterAddrs, DialTimeout: 4 * t, ReadTimeout: t, WriteTimeout: t, PoolTimeout: t,
			ContextTimeoutEnabled: true, MaxRetries: -1, Protocol: 2,
		}), nil
	}
	opts, err := redis.ParseURL(rc.URL)
	if err != nil {
		return nil, usageError{fmt.Errorf("ratelimit.redis.url: %w", err)}
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = 4*t, t, t, t
	opts.ContextTimeoutEnabled, opts.MaxRetries = true, -1
	if opts.Protocol == 0 {
		opts.Protocol = 2
	}
	return redis.NewClient(opts), nil
}
