package ratelimit

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

// BenchmarkRedisTake runs Takes of Envoy's two MCP descriptors (a sliding
// window per subject, GCRA per subject and tool) over 10 000 subjects from
// parallel callers, as rl-redis does, and reports Redis's own CPU per Take
// (redis-µs/op, from INFO cpu) beside this process's (cpu-µs/op, all its
// threads: the store, go-redis and the system calls): on a machine where
// Redis shares the cores, its work counts as much as ours, and ns/op of
// parallel callers is neither.
func BenchmarkRedisTake(b *testing.B) {
	client := ratelimittest.Redis(b)
	s := newTestRedisStore(b, RedisOptions{Client: client})
	runStore(b, s)
	sliding := &Limit{Requests: 1e8, Window: time.Minute, Algorithm: SlidingWindow, Key: "subject"}
	gcra := &Limit{Requests: 1e8, Window: time.Minute, Algorithm: GCRA, Burst: 1e6, Key: "subject_tool"}
	const subjects = 10_000
	reqs := make([][]Hit, subjects)
	for i := range reqs {
		sub := "mcp|subject=user-" + strconv.Itoa(i)
		reqs[i] = []Hit{
			{Key: sub + "|subject", Limit: sliding, Hits: 1},
			{Key: sub + "|tool=fs.read|subject_tool", Limit: gcra, Hits: 1},
		}
	}
	ctx := context.Background()
	before, selfBefore := redisCPU(b, client), processCPU(b)
	var next atomic.Uint64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			hits := reqs[next.Add(1)%subjects]
			if out, err := s.Take(ctx, hits); err != nil || out[0].OverLimit {
				b.Errorf("Take: %v %v", out, err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((redisCPU(b, client)-before).Microseconds())/float64(b.N), "redis-µs/op")
	b.ReportMetric(float64((processCPU(b)-selfBefore).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is this process's CPU time so far (user + system).
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU is the Redis server's CPU time so far (used_cpu_user +
// used_cpu_sys).
func redisCPU(tb testing.TB, c redis.UniversalClient) time.Duration {
	tb.Helper()
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatal(err)
			}
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}
