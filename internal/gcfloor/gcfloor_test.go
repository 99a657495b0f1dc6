package gcfloor

import (
	"context"
	"runtime"
	"runtime/debug"
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

var sink []byte

// cycles is the number of collections while allocating 256 MiB of
// short-lived garbage.
func cycles() uint32 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 256 << 10 {
		sink = make([]byte, 1024)
	}
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

func TestStartRaisesTheGoalOnASmallHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	base := cycles()

	ctx, cancel := context.WithCancel(context.Background())
	Start(ctx, DefaultFloor, func(string) string { return "" })
	if p := gcPercent(); p <= 100 {
		t.Fatalf("GOGC = %d after Start on a test's heap, want more than 100", p)
	}
	floored := cycles()
	if floored*4 > base {
		t.Errorf("%d collections with the floor, %d without: want at most a quarter", floored, base)
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
