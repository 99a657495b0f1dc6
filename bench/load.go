package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Mode is how load is offered.
type Mode string

const (
	// Closed runs a fixed number of workers, each sending its next request
	// as soon as the previous one is answered: the throughput it reaches is
	// the server's maximum (for that concurrency). Its latencies are service
	// times; they hide queueing, so they are not the latency users see.
	Closed Mode = "closed"
	// Open sends requests at a fixed arrival rate, whatever the server
	// does, and measures each latency from the moment the request was
	// scheduled to be sent: when the server falls behind, the time a request
	// waits for a free worker counts (no coordinated omission).
	Open Mode = "open"
)

// A Caller sends one request and waits for its answer. Each worker owns one
// Caller, so a Caller needs no locking. outcome names the answer (an allow
// or a denial are both answers); err is a request that got no answer.
type Caller interface {
	Call(ctx context.Context) (outcome string, err error)
}

// A Target makes the Callers of a run, one per worker. NewCaller may do
// untimed set-up work such as an MCP initialize.
type Target interface {
	NewCaller(ctx context.Context, worker int) (Caller, error)
}

// A Meter samples something outside the load generator — the server
// process, Redis — when the measured window opens and closes, and adds what
// it saw to the result once the run is over.
type Meter interface {
	Begin() error
	End() error
	Report(r *Result)
}

// Load describes one run.
type Load struct {
	Mode Mode
	// Workers is the number of concurrent callers. In open mode it bounds
	// the requests in flight: a generous number lets queueing show up in
	// the server rather than in the generator.
	Workers int
	// Rate is the arrival rate of open mode, in requests per second.
	Rate float64
	// Warmup runs before the measured window and is not recorded.
	Warmup time.Duration
	// Duration is the measured window.
	Duration time.Duration
	// Timeout bounds one request; default 5s.
	Timeout time.Duration
	// Meters are sampled at the edges of the measured window.
	Meters []Meter
}

// Result is what one run measured.
type Result struct {
	Mode        Mode    `json:"mode"`
	Workers     int     `json:"workers"`
	OfferedRate float64 `json:"offered_rate,omitempty"`
	Seconds     float64 `json:"seconds"`
	// Requests is the number of answered requests scheduled (open) or sent
	// (closed) within the measured window; Errors the ones that got no
	// answer.
	Requests   int64            `json:"requests"`
	Errors     int64            `json:"errors"`
	Throughput float64          `json:"throughput"`
	Outcomes   map[string]int64 `json:"outcomes"`
	// ErrorSamples holds a few distinct error messages.
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Dropped counts the open-mode requests whose scheduled time fell in
	// the window but that no worker was free to send before it closed: the
	// offered rate was more than the server (or the workers) could take.
	Dropped int64 `json:"dropped,omitempty"`
	// Latency is measured from the scheduled send time in open mode, from
	// the actual send time in closed mode.
	Latency Latency `json:"latency"`
	// Service is the open-mode latency from the actual send time: what a
	// closed-loop tool would have reported.
	Service *Latency `json:"service,omitempty"`
	// Server is the measured server process; Client this process.
	Server *ProcUsage `json:"server,omitempty"`
	Client *ProcUsage `json:"client,omitempty"`
	// Redis is what Redis executed during the window.
	Redis *RedisUsage `json:"redis,omitempty"`
}

// OKFraction is the share of answered requests whose outcome is "OK".
func (r *Result) OKFraction() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.Outcomes["OK"]) / float64(r.Requests)
}

// worker is the state one worker goroutine records into.
type worker struct {
	lat, svc  *hdrhistogram.Histogram
	outcomes  map[string]int64
	requests  int64
	errors    int64
	errSample map[string]bool
}

// maxErrorSamples bounds the distinct error messages kept per run.
const maxErrorSamples = 5

// Run offers the load l to t and reports what it measured. It returns an
// error when the callers cannot be made or ctx ends; a request that fails
// is counted, not returned.
func Run(ctx context.Context, t Target, l Load) (*Result, error) {
	if l.Workers <= 0 {
		return nil, errors.New("workers must be positive")
	}
	if l.Duration <= 0 {
		return nil, errors.New("duration must be positive")
	}
	if l.Mode == Open && !(l.Rate > 0) {
		return nil, errors.New("open mode needs a positive rate")
	}
	if l.Mode != Open && l.Mode != Closed {
		return nil, fmt.Errorf("unknown mode %q", l.Mode)
	}
	if l.Timeout <= 0 {
		l.Timeout = 5 * time.Second
	}
	callers := make([]Caller, l.Workers)
	for i := range callers {
		c, err := t.NewCaller(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		callers[i] = c
	}

	// This process is measured too: on a small machine the generator's own
	// CPU is what the server could not use.
	meters := append([]Meter{&ProcMeter{Self: true}}, l.Meters...)

	// A small head start so that every worker is parked before the first
	// scheduled send.
	start := time.Now().Add(10 * time.Millisecond)
	warmEnd := start.Add(l.Warmup)
	end := warmEnd.Add(l.Duration)

	// The meters run on their own goroutine so that sampling /proc or
	// Redis never delays a worker.
	meterErr := make(chan error, 1)
	go func() { meterErr <- runMeters(ctx, meters, warmEnd, end) }()

	var slot atomic.Int64 // next open-mode slot; slot i is due at start + i/Rate
	interval := time.Duration(0)
	if l.Mode == Open {
		interval = time.Duration(float64(time.Second) / l.Rate)
		if interval <= 0 {
			interval = 1
		}
	}
	workers := make([]*worker, l.Workers)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{lat: newHistogram(), outcomes: map[string]int64{}, errSample: map[string]bool{}}
		if l.Mode == Open {
			w.svc = newHistogram()
		}
		workers[i] = w
		wg.Go(func() {
			if l.Mode == Open {
				w.runOpen(ctx, callers[i], &slot, start, interval, warmEnd, end, l.Timeout)
			} else {
				w.runClosed(ctx, callers[i], start, warmEnd, end, l.Timeout)
			}
		})
	}
	wg.Wait()
	if err := <-meterErr; err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	r := &Result{Mode: l.Mode, Workers: l.Workers, Seconds: l.Duration.Seconds(), Outcomes: map[string]int64{}}
	lats := make([]*hdrhistogram.Histogram, 0, len(workers))
	var svcs []*hdrhistogram.Histogram
	samples := map[string]bool{}
	for _, w := range workers {
		r.Requests += w.requests
		r.Errors += w.errors
		for k, v := range w.outcomes {
			r.Outcomes[k] += v
		}
		for s := range w.errSample {
			samples[s] = true
		}
		lats = append(lats, w.lat)
		if w.svc != nil {
			svcs = append(svcs, w.svc)
		}
	}
	for s := range samples {
		r.ErrorSamples = append(r.ErrorSamples, s)
	}
	sort.Strings(r.ErrorSamples)
	if len(r.ErrorSamples) > maxErrorSamples {
		r.ErrorSamples = r.ErrorSamples[:maxErrorSamples]
	}
	r.Latency = summarize(mergeHistograms(lats))
	if l.Mode == Open {
		r.OfferedRate = l.Rate
		s := summarize(mergeHistograms(svcs))
		r.Service = &s
		// Every slot due before the end that no worker took is dropped.
		due := int64(math.Ceil(float64(end.Sub(start)) / float64(interval)))
		if taken := slot.Load(); taken < due {
			r.Dropped = due - taken
		}
	}
	r.Throughput = float64(r.Requests) / l.Duration.Seconds()
	for _, m := range meters {
		m.Report(r)
	}
	return r, nil
}

// runMeters calls Begin on every meter at warmEnd and End at end.
func runMeters(ctx context.Context, meters []Meter, warmEnd, end time.Time) error {
	if err := sleepUntil(ctx, warmEnd); err != nil {
		return nil // the run reports ctx's error itself
	}
	var errs []error
	for _, m := range meters {
		errs = append(errs, m.Begin())
	}
	if err := sleepUntil(ctx, end); err != nil {
		return nil
	}
	for _, m := range meters {
		errs = append(errs, m.End())
	}
	return errors.Join(errs...)
}

// runClosed sends requests back to back until end.
func (w *worker) runClosed(ctx context.Context, c Caller, start, warmEnd, end time.Time, timeout time.Duration) {
	if sleepUntil(ctx, start) != nil {
		return
	}
	for {
		t0 := time.Now()
		if !t0.Before(end) || ctx.Err() != nil {
			return
		}
		outcome, err := call(ctx, c, timeout)
		if t0.Before(warmEnd) {
			continue
		}
		w.count(outcome, err)
		if err == nil {
			record(w.lat, time.Since(t0))
		}
	}
}

// runOpen takes the next slot, waits for its scheduled time and sends.
// When every worker is busy past a slot's time, the slot waits for one, and
// that wait is part of its latency, as it would be for a user.
func (w *worker) runOpen(ctx context.Context, c Caller, slot *atomic.Int64, start time.Time, interval time.Duration, warmEnd, end time.Time, timeout time.Duration) {
	for {
		i := slot.Add(1) - 1
		due := start.Add(time.Duration(i) * interval)
		if !due.Before(end) {
			slot.Add(-1) // not taken: keeps the count of taken slots exact
			return
		}
		if sleepUntil(ctx, due) != nil {
			return
		}
		t0 := time.Now()
		if !t0.Before(end) {
			// Too late to send within the window: the slot is dropped.
			slot.Add(-1)
			return
		}
		outcome, err := call(ctx, c, timeout)
		t1 := time.Now()
		if due.Before(warmEnd) {
			continue
		}
		w.count(outcome, err)
		if err == nil {
			record(w.lat, t1.Sub(due))
			record(w.svc, t1.Sub(t0))
		}
	}
}

func (w *worker) count(outcome string, err error) {
	if err != nil {
		w.errors++
		if len(w.errSample) < maxErrorSamples {
			w.errSample[err.Error()] = true
		}
		return
	}
	w.requests++
	w.outcomes[outcome]++
}

// call sends one request under its own deadline.
func call(ctx context.Context, c Caller, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Call(ctx)
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
