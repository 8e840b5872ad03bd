package loadgen

import (
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// Hist is a histogram of durations that many goroutines record into at
// once, with about 1.5 % relative precision (64 linear sub-buckets per power
// of two, in microseconds) and an exact maximum. Recording is two atomic
// adds and a compare: cheap enough for every delivery.
type Hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64 // nanoseconds
}

const (
	histSub     = 64
	histMaxUS   = 1<<40 - 1 // about 12 days
	histBuckets = (41-7)*histSub + 2*histSub
)

func histIndex(us uint64) int {
	if us > histMaxUS {
		us = histMaxUS
	}
	if us < 2*histSub {
		return int(us)
	}
	e := bits.Len64(us) - 7 // us>>e is in [64, 128)
	return e*histSub + int(us>>e)
}

// histLower is the smallest value, in microseconds, of bucket i.
func histLower(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	m := uint64(i - e*histSub)
	return m << e
}

// Record adds one duration; negative ones count as zero.
func (h *Hist) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d/time.Microsecond))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Count returns how many durations were recorded.
func (h *Hist) Count() uint64 { return h.n.Load() }

// Max returns the largest duration recorded.
func (h *Hist) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the q-quantile (0 < q ≤ 1): the middle of the bucket that
// holds it, never above Max.
func (h *Hist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= rank {
			lo := histLower(i)
			hi := histLower(i + 1)
			mid := time.Duration((lo+hi)/2) * time.Microsecond
			return min(mid, h.Max())
		}
	}
	return h.Max()
}

// Summary is the distribution of a set of durations, in milliseconds.
type Summary struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Summary of the histogram.
func (h *Hist) Summary() Summary {
	return Summary{N: int(h.Count()), P50: ms(h.Quantile(.50)), P95: ms(h.Quantile(.95)),
		P99: ms(h.Quantile(.99)), Max: ms(h.Max())}
}

// summarize returns exact quantiles (nearest rank) of ds.
func summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Summary{N: len(s), P50: ms(at(.50)), P95: ms(at(.95)), P99: ms(at(.99)), Max: ms(s[len(s)-1])}
}
