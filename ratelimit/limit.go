package ratelimit

import (
	"context"
	"errors"
	"time"
)

// Algorithm is how a limit counts.
type Algorithm int

const (
	// FixedWindow counts hits in epoch-aligned windows, as envoyproxy/ratelimit
	// does: at most Requests per window, but up to twice that across a
	// window boundary.
	FixedWindow Algorithm = iota
	// SlidingWindow weighs the previous window's count by how much of it
	// still overlaps the sliding window: no boundary doubling.
	SlidingWindow
	// GCRA (the generic cell rate algorithm) spaces hits evenly with a
	// burst allowance: at most Burst + Requests·t/Window hits over any
	// interval t.
	GCRA
)

func (a Algorithm) String() string {
	switch a {
	case SlidingWindow:
		return "sliding_window"
	case GCRA:
		return "gcra"
	default:
		return "fixed_window"
	}
}

// Limit is one rate limit: Requests per Window, counted by Algorithm.
type Limit struct {
	// Name is rate_limit.name, the handle replaces refers to.
	Name string
	// Requests per Window. Zero with Unlimited false admits nothing.
	Requests uint64
	Window   time.Duration
	// Unit is the unit of the configuration ("second", "minute", ...), or
	// "" for an arbitrary window; ReportUnit and ReportRequests are what a
	// RateLimitResponse says about the limit (an arbitrary window is
	// reported in the largest unit that divides it).
	Unit           string
	ReportUnit     string
	ReportRequests uint64
	Algorithm      Algorithm
	// Burst is the GCRA burst: how many hits may arrive at once.
	Burst     uint64
	Unlimited bool
	// Replaces names the limits this one replaces when both match.
	Replaces []string
	// ShadowMode reports over-limit in metrics but never rejects.
	ShadowMode bool
	// DetailedMetric asks for metrics labelled with descriptor values.
	DetailedMetric bool
	// Key identifies the limit in its domain: the descriptor path of its
	// configuration ("subject_tool" or "subject.tool_x"), used in store
	// keys and metric labels (values only with DetailedMetric).
	Key string
}

// Hit asks a store to count Hits against Limit under Key.
type Hit struct {
	// Key is the counter's key: domain, the request's descriptor entries,
	// and the limit's configuration (so a changed limit starts fresh).
	Key   string
	Limit *Limit
	// Hits is how much the request counts; 0 only checks.
	Hits uint64
}

// Outcome is a store's answer for one Hit.
type Outcome struct {
	// OverLimit reports that the hit does not fit.
	OverLimit bool
	// Remaining is what is left of the limit after this request (when it
	// was admitted) or now (when it was not).
	Remaining uint64
	// ResetAfter is the time until the limit is fully available again
	// (fixed and sliding windows: the end of the current window; GCRA: when
	// the bucket drains).
	ResetAfter time.Duration
}

// Store counts hits. Take checks every hit of one request and counts them
// all only if none that is not in shadow mode is over its limit: a
// rejected request does not use up quota. Implementations are safe for
// concurrent use.
type Store interface {
	Take(ctx context.Context, hits []Hit) ([]Outcome, error)
}

// ErrStoreUnavailable is returned (wrapped) by a store that cannot answer:
// Redis down, slow, or its circuit open.
var ErrStoreUnavailable = errors.New("ratelimit: store unavailable")
