package gcfloor

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		live, floor uint64
		want        int
	}{
		{live: 4 << 20, floor: 64 << 20, want: 1500},
		{live: 16 << 20, floor: 64 << 20, want: 300},
		{live: 30 << 20, floor: 64 << 20, want: 113},
		{live: 32 << 20, floor: 64 << 20, want: 100}, // the default already reaches the floor
		{live: 1 << 30, floor: 64 << 20, want: 100},
		{live: 1 << 10, floor: 64 << 20, want: 1600},
		{live: 0, floor: 64 << 20, want: maxPercent},
	} {
		if got := Percent(tc.live, tc.floor); got != tc.want {
			t.Errorf("Percent(%d MiB, %d MiB) = %d, want %d", tc.live>>20, tc.floor>>20, got, tc.want)
		}
	}
}

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// heapGoal is the collector's heap goal after a collection.
func heapGoal() uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// The heap goal is read rather than collections counted: how many cycles
// a burst of garbage takes depends on how fast the collector runs beside
// it, which a loaded machine changes, while the goal is what Start sets.
func TestStartRaisesTheGoalOnASmallHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if base := heapGoal(); base >= DefaultFloor/2 {
		t.Skipf("the test's heap goal is already %d MiB", base>>20)
	}

	ctx, cancel := context.WithCancel(context.Background())
	Start(ctx, DefaultFloor, func(string) string { return "" })
	if p := gcPercent(); p <= 100 {
		t.Fatalf("GOGC = %d after Start on a test's heap, want more than 100", p)
	}
	// Start sets GOGC from the live heap of the last collection; each
	// collection sets it again from the new one.
	for range 3 {
		if goal := heapGoal(); goal < DefaultFloor*9/10 {
			t.Errorf("heap goal %d MiB with the floor, want at least %d MiB", goal>>20, DefaultFloor*9/10>>20)
		}
	}
	cancel()
	// The tuner restores GOGC after the next collection.
	deadline := time.Now().Add(10 * time.Second)
	for gcPercent() != 100 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if p := gcPercent(); p != 100 {
		t.Errorf("GOGC = %d after ctx ended, want the previous 100", p)
	}
	if goal := heapGoal(); goal >= DefaultFloor/2 {
		t.Errorf("heap goal %d MiB after ctx ended, want the default's again", goal>>20)
	}
}

func TestStartLeavesAnOperatorsGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(150))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	Start(ctx, DefaultFloor, func(k string) string {
		if k == "GOGC" {
			return "150"
		}
		return ""
	})
	runtime.GC()
	if p := gcPercent(); p != 150 {
		t.Errorf("GOGC = %d, want the operator's 150", p)
	}
}

// As the live heap grows past half the floor, GOGC returns to the default:
// the floor never multiplies a large heap.
func TestStartFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	Start(ctx, DefaultFloor, func(string) string { return "" })
	if p := gcPercent(); p <= 100 {
		t.Fatalf("GOGC = %d on a small heap", p)
	}
	big := make([]byte, 48<<20)
	deadline := time.Now().Add(10 * time.Second)
	for gcPercent() != 100 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if p := gcPercent(); p != 100 {
		t.Errorf("GOGC = %d with a 48 MiB live heap, want 100", p)
	}
	runtime.KeepAlive(big)
}
