package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in nanoseconds from 1ns to a minute with three
// significant digits: a null server answers in tens of microseconds and an
// overloaded open-loop run queues for seconds, and both must be told apart
// from their neighbours within 0.1%.
const (
	histMin     = 1
	histMax     = int64(time.Minute)
	histSigFigs = 3
)

// newHistogram returns an empty latency histogram. One histogram belongs to
// one worker, so recording takes no lock; [mergeHistograms] adds them up
// when the run is over.
func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histSigFigs)
}

// record adds d, clamped into the histogram's range: a latency longer than
// a minute is still a sample (at the top), never a lost one.
func record(h *hdrhistogram.Histogram, d time.Duration) {
	v := int64(d)
	if v < histMin {
		v = histMin
	}
	if v > histMax {
		v = histMax
	}
	_ = h.RecordValue(v) // in range by construction
}

// mergeHistograms adds hs into one new histogram.
func mergeHistograms(hs []*hdrhistogram.Histogram) *hdrhistogram.Histogram {
	all := newHistogram()
	for _, h := range hs {
		all.Merge(h)
	}
	return all
}

// Latency summarizes a latency distribution. Times are in microseconds, the
// unit the tables use; Histogram holds the whole distribution (HdrHistogram
// V2 compressed, base64) for anyone who wants other percentiles.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	// Histogram is the encoded distribution; empty when nothing was recorded.
	Histogram string `json:"histogram,omitempty"`
}

// summarize reports the percentiles of h.
func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	l := Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1e3,
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		Max:   us(h.Max()),
	}
	if enc, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase); err == nil {
		l.Histogram = string(enc)
	}
	return l
}

// DecodeLatency returns the histogram encoded in l, for reading percentiles
// that the summary does not carry.
func DecodeLatency(l Latency) (*hdrhistogram.Histogram, error) {
	return hdrhistogram.Decode([]byte(l.Histogram))
}
