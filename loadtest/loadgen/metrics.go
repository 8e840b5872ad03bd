package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The server's metrics read by -bus-lag (server/metrics.go).
const (
	metricBusLag    = "chat_bus_lag_seconds"
	metricDelivered = "chat_messages_delivered_total"
)

// metricsSample is what one scrape of a server's /metrics gives.
type metricsSample struct {
	lag       PromHist
	delivered float64
}

// PromHist is one Prometheus histogram: cumulative counts per upper bound
// (sorted, +Inf last), plus _sum and _count.
type PromHist struct {
	Bounds []float64 // upper bounds, seconds; the last is +Inf
	Counts []float64 // cumulative
	Sum    float64
	Count  float64
}

// ParseMetrics reads the Prometheus text exposition format (the subset a
// client_golang registry writes: no timestamps needed) and returns the
// histogram called hist and the value of the counter called counter.
// Missing metrics are zero; malformed lines of those two are errors.
// Input is bounded by the caller.
func ParseMetrics(r io.Reader, hist, counter string) (PromHist, float64, error) {
	var h PromHist
	var cval float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	type bucket struct{ le, n float64 }
	var bs []bucket
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, hist) && !strings.HasPrefix(line, counter) {
			continue
		}
		name, labels, val, err := splitSample(line)
		if err != nil {
			return h, 0, err
		}
		switch name {
		case counter:
			cval = val
		case hist + "_sum":
			h.Sum = val
		case hist + "_count":
			h.Count = val
		case hist + "_bucket":
			le, ok := labelValue(labels, "le")
			if !ok {
				return h, 0, fmt.Errorf("metrics: bucket without le: %q", line)
			}
			b, err := strconv.ParseFloat(le, 64)
			if err != nil {
				return h, 0, fmt.Errorf("metrics: bad le in %q", line)
			}
			bs = append(bs, bucket{b, val})
		}
	}
	if err := sc.Err(); err != nil {
		return h, 0, err
	}
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	for _, b := range bs {
		h.Bounds = append(h.Bounds, b.le)
		h.Counts = append(h.Counts, b.n)
	}
	return h, cval, nil
}

// splitSample splits `name{labels} value [timestamp]`.
func splitSample(line string) (name, labels string, val float64, err error) {
	rest := line
	if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return "", "", 0, fmt.Errorf("metrics: unbalanced braces: %q", line)
		}
		name, labels, rest = line[:i], line[i+1:j], line[j+1:]
	} else if i >= 0 {
		name, rest = line[:i], line[i:]
	} else {
		return "", "", 0, fmt.Errorf("metrics: no value: %q", line)
	}
	f := strings.Fields(rest)
	if len(f) < 1 {
		return "", "", 0, fmt.Errorf("metrics: no value: %q", line)
	}
	val, err = strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "", "", 0, fmt.Errorf("metrics: bad value in %q", line)
	}
	return name, labels, val, nil
}

// labelValue finds key="value" in a label list (values without escapes,
// as le and the server's labels are).
func labelValue(labels, key string) (string, bool) {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k == key {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// Sub is h − prev bucket by bucket: the observations between two scrapes.
// The bounds must be the same (the same server, not restarted).
func (h PromHist) Sub(prev PromHist) (PromHist, error) {
	if len(prev.Bounds) == 0 {
		return h, nil
	}
	if !slices.Equal(h.Bounds, prev.Bounds) {
		return PromHist{}, errors.New("metrics: histogram buckets changed between scrapes")
	}
	d := PromHist{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts)), Sum: h.Sum - prev.Sum, Count: h.Count - prev.Count}
	for i := range h.Counts {
		d.Counts[i] = h.Counts[i] - prev.Counts[i]
		if d.Counts[i] < 0 {
			return PromHist{}, errors.New("metrics: counter went down between scrapes (server restarted?)")
		}
	}
	return d, nil
}

// Add is h + o bucket by bucket (the servers of one cluster share the
// bucket layout); an empty h takes o's.
func (h PromHist) Add(o PromHist) (PromHist, error) {
	if len(h.Bounds) == 0 {
		return PromHist{Bounds: o.Bounds, Counts: slices.Clone(o.Counts), Sum: o.Sum, Count: o.Count}, nil
	}
	if len(o.Bounds) == 0 {
		return h, nil
	}
	if !slices.Equal(h.Bounds, o.Bounds) {
		return PromHist{}, errors.New("metrics: servers have different histogram buckets")
	}
	s := PromHist{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts)), Sum: h.Sum + o.Sum, Count: h.Count + o.Count}
	for i := range h.Counts {
		s.Counts[i] = h.Counts[i] + o.Counts[i]
	}
	return s, nil
}

// Quantile estimates the q-quantile (0..1) in seconds as PromQL's
// histogram_quantile: linear inside the bucket holding the rank, the
// lower bound of the first bucket being 0; a rank in the +Inf bucket gives
// the highest finite bound. NaN without observations.
func (h PromHist) Quantile(q float64) float64 {
	n := len(h.Counts)
	if n == 0 || h.Counts[n-1] <= 0 {
		return math.NaN()
	}
	total := h.Counts[n-1]
	rank := q * total
	for i := 0; i < n; i++ {
		if h.Counts[i] < rank {
			continue
		}
		if math.IsInf(h.Bounds[i], 1) {
			if i == 0 {
				return math.NaN()
			}
			return h.Bounds[i-1]
		}
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = h.Bounds[i-1], h.Counts[i-1]
		}
		in := h.Counts[i] - below
		if in <= 0 {
			return h.Bounds[i]
		}
		return lo + (h.Bounds[i]-lo)*(rank-below)/in
	}
	return h.Bounds[n-1]
}

// busLagOf summarizes a histogram of bus lags in milliseconds.
func busLagOf(h PromHist) *BusLag {
	b := &BusLag{}
	if len(h.Counts) > 0 {
		b.N = int64(math.Round(h.Counts[len(h.Counts)-1]))
	}
	if b.N == 0 {
		return b
	}
	msq := func(q float64) float64 {
		v := h.Quantile(q)
		if math.IsNaN(v) {
			return 0
		}
		return math.Round(v*1e6) / 1e3
	}
	b.P50, b.P90, b.P99 = msq(.5), msq(.9), msq(.99)
	for i := len(h.Bounds) - 1; i >= 0; i-- {
		if !math.IsInf(h.Bounds[i], 1) {
			b.TopMs = math.Round(h.Bounds[i]*1e6) / 1e3
			break
		}
	}
	b.MeanMs = math.Round(h.Sum/float64(b.N)*1e6) / 1e3
	return b
}

// scrapeAll reads every server's /metrics; nil (and a problem noted) if
// any failed. Each scrape is bounded by 5 s and 4 MB.
func (r *run) scrapeAll(res *Result) []metricsSample {
	out := make([]metricsSample, len(r.targets))
	for i, t := range r.targets {
		s, err := r.scrape(t)
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("-bus-lag: %s/metrics: %v", t.url, err))
			return nil
		}
		out[i] = s
	}
	return out
}

func (r *run) scrape(t *srvTarget) (metricsSample, error) {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.hostport+"/metrics", nil)
	if err != nil {
		return metricsSample{}, err
	}
	resp, err := r.httpc.Do(req)
	if err != nil {
		return metricsSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return metricsSample{}, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return metricsSample{}, err
	}
	h, d, err := ParseMetrics(bytes.NewReader(body), metricBusLag, metricDelivered)
	if err != nil {
		return metricsSample{}, err
	}
	if len(h.Bounds) == 0 {
		return metricsSample{}, fmt.Errorf("no %s histogram (not this project's server?)", metricBusLag)
	}
	return metricsSample{lag: h, delivered: d}, nil
}

// busLag fills res.BusLag (and each server's) from two scrapes.
func (r *run) busLag(res *Result, m0, m1 []metricsSample) {
	var all PromHist
	var delivered float64
	for i := range m1 {
		d, err := m1[i].lag.Sub(m0[i].lag)
		if err == nil {
			all, err = all.Add(d)
		}
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("-bus-lag: %s: %v", r.targets[i].url, err))
			return
		}
		del := m1[i].delivered - m0[i].delivered
		delivered += del
		if i < len(res.Servers) {
			res.Servers[i].BusLag = busLagOf(d)
			res.Servers[i].MetricsDelivered = int64(math.Round(del))
		}
	}
	res.BusLag = busLagOf(all)
	res.BusLag.MetricsDelivered = int64(math.Round(delivered))
}
