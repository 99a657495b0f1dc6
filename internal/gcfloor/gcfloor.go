// Package gcfloor keeps the garbage collector from running on a tiny heap.
//
// Portcullis's live heap is small (4–5 MB serving the RBAC example: the
// compiled policy, the caches) and its allocation rate high (a few KiB per
// Check, most of it the gRPC request itself). With GOGC at its default of
// 100 the heap goal is twice the live heap, about 10 MB, and the collector
// ran 30 times a second at 13k Checks/s, a tenth of the CPU. A floor under
// the heap goal fixes that without the unbounded growth of a large fixed
// GOGC: the percentage is raised only as far as the floor needs, and falls
// back to 100 as the live heap grows past half of it.
package gcfloor

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// DefaultFloor is the heap goal below which Start keeps the collector idle.
const DefaultFloor = 64 << 20

// maxPercent bounds the percentage while the live heap is tiny. Before its
// first cycle the runtime assumes a live heap of 4 MiB: 1600 puts that
// first goal at the floor.
const maxPercent = 1600

// liveHeap is the runtime metric of the heap marked live by the last cycle.
const liveHeap = "/gc/heap/live:bytes"

// Percent is the GOGC that gives a heap goal of at least floor bytes over a
// live heap of live bytes, and never less than Go's default of 100.
func Percent(live, floor uint64) int {
	if live == 0 {
		return maxPercent
	}
	if live*2 >= floor {
		return 100
	}
	p := int((floor - live) * 100 / live)
	return min(max(p, 100), maxPercent)
}

// Start sets GOGC after every collection from the live heap it found, so
// that the next heap goal is at least floor bytes, until ctx ends; then
// it restores the previous GOGC. It does nothing when the environment sets
// GOGC: the operator's choice stands. GOMEMLIMIT, when set, still bounds
// the heap as usual.
func Start(ctx context.Context, floor uint64, getenv func(string) string) {
	if getenv("GOGC") != "" || floor == 0 {
		return
	}
	sample := []metrics.Sample{{Name: liveHeap}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return // not this runtime's metric: leave GOGC alone
	}
	t := &tuner{ctx: ctx, floor: floor, sample: sample}
	t.previous = debug.SetGCPercent(Percent(sample[0].Value.Uint64(), floor))
	t.arm()
}

// tuner runs after each collection: a cleanup attached to an object that
// nothing references runs once the cycle that found it unreachable is
// over, and then attaches itself to a new one.
type tuner struct {
	ctx      context.Context
	floor    uint64
	sample   []metrics.Sample // used only by the cleanup goroutine
	previous int
}

// sentinel is big enough not to be a tiny allocation, which may share
// its block with other objects and outlive the cycle.
type sentinel [16]uint64

func (t *tuner) arm() {
	runtime.AddCleanup(new(sentinel), (*tuner).collected, t)
}

func (t *tuner) collected() {
	if t.ctx.Err() != nil {
		debug.SetGCPercent(t.previous)
		return
	}
	metrics.Read(t.sample)
	debug.SetGCPercent(Percent(t.sample[0].Value.Uint64(), t.floor))
	t.arm()
}
