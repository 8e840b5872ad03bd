package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store"
	"github.com/chatd/chat/store/sqlite"
)

func TestCheckLoopback(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:3000", "http://localhost:3500", "http://[::1]:3000", "ws://127.0.0.2:80"} {
		if err := CheckLoopback(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.0.0.1:3000", "http://example.com:80", "http://0.0.0.0:3000",
		"https://127.0.0.1:3000", "http://127.0.0.1", "http://[::2]:3000", "http://localhost.example.com:3000"} {
		if err := CheckLoopback(u); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
}

func TestFrames(t *testing.T) {
	var wire []byte
	sizes := []int{0, 1, 125, 126, 300, 65535, 65536, 100000}
	for _, n := range sizes {
		// Server frames are unmasked: build them by hand.
		p := bytes.Repeat([]byte{'x'}, n)
		f := []byte{0x81}
		switch {
		case n < 126:
			f = append(f, byte(n))
		case n <= 0xFFFF:
			f = append(f, 126, byte(n>>8), byte(n))
		default:
			f = append(f, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		}
		wire = append(wire, append(f, p...)...)
	}
	// Fed a byte at a time, every prefix parses to the frames it holds.
	var got []int
	buf := []byte{}
	for _, b := range wire {
		buf = append(buf, b)
		used, err := parseFrames(buf, func(fin bool, op byte, p []byte) error {
			if !fin || op != opText {
				t.Fatalf("fin %v op %d", fin, op)
			}
			got = append(got, len(p))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		buf = buf[used:]
	}
	if len(buf) != 0 || len(got) != len(sizes) {
		t.Fatalf("left %d bytes, frames %v", len(buf), got)
	}
	for i := range sizes {
		if got[i] != sizes[i] {
			t.Fatalf("frame %d: %d bytes, want %d", i, got[i], sizes[i])
		}
	}
	// A masked client frame unmasks to its payload.
	mask := [4]byte{1, 2, 3, 4}
	f := appendFrame(nil, opText, []byte("42[\"hello\"]"), mask)
	if f[1]&0x80 == 0 {
		t.Fatal("client frame not masked")
	}
	p := f[6:]
	for i := range p {
		p[i] ^= mask[i&3]
	}
	if string(p) != `42["hello"]` {
		t.Fatalf("unmasked %q", p)
	}
}

func TestHist(t *testing.T) {
	var h Hist
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{.5, 500 * time.Millisecond}, {.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.Quantile(c.q)
		if d := got - c.want; d < -c.want/50 || d > c.want/50 {
			t.Errorf("q%.2f = %v, want %v ±2%%", c.q, got, c.want)
		}
	}
	if h.Max() != time.Second {
		t.Errorf("max %v", h.Max())
	}
	for i := 0; i < 5000; i++ { // every bucket index is in range
		histIndex(uint64(i) * 7919 * 7919)
	}
	histIndex(1 << 63)
}

func TestReadProc(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.HWM < s.RSS {
		t.Fatalf("rss %d hwm %d", s.RSS, s.HWM)
	}
}

// startServer runs this project's Go server in the test process on a
// fresh SQLite store and returns its URL.
func startServer(t *testing.T) string {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return serve(t, server.Config{BcryptCost: 4}, st)
}

// serve runs a chat server with cfg on st on a loopback port until the
// test ends, and returns its URL.
func serve(t *testing.T, cfg server.Config, st store.Store) string {
	t.Helper()
	srv, err := server.New(cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return "http://" + ln.Addr().String()
}

// TestRunAgainstServer is the whole generator against the real server:
// WebSocket and polling clients, with and without send acknowledgements,
// and every delivery accounted for.
func TestRunAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	url := startServer(t)
	for _, ack := range []bool{true, false} {
		res, err := Run(context.Background(), Config{
			URL: url, Clients: 40, Senders: 3, Rate: 40, Messages: 40, Duration: 5 * time.Second,
			Drain: 10 * time.Second, Settle: 100 * time.Millisecond, Polling: 0.25, Ack: ack, XFF: true,
			ServerPID: os.Getpid(), MaxRun: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK {
			t.Fatalf("ack=%v: problems %v, errors %v", ack, res.Problems, res.FirstErrors)
		}
		if res.Delivered != 40*40 || res.Expected != 40*40 || res.Missing != 0 || res.PollingClients != 9 {
			t.Fatalf("ack=%v: delivered %d expected %d missing %d polling %d", ack, res.Delivered, res.Expected, res.Missing, res.PollingClients)
		}
		if ack && (res.Ack == nil || res.AcksOK != 40) {
			t.Fatalf("acks %d", res.AcksOK)
		}
		if res.PingIntervalMs <= 0 || res.PingTimeoutMs <= 0 {
			t.Fatalf("heartbeat not recorded: %d/%d", res.PingIntervalMs, res.PingTimeoutMs)
		}
		if res.Fanout.N != 40 || res.Fanout.P50 <= 0 || res.Fanout.Max < res.Fanout.P99 {
			t.Fatalf("fanout %+v", res.Fanout)
		}
		var tbl strings.Builder
		res.WriteTable(&tbl)
		if !strings.Contains(tbl.String(), "1600 of 1600") {
			t.Fatalf("table:\n%s", tbl.String())
		}
	}
	res, err := Run(context.Background(), Config{URL: url, Clients: 30, Idle: true, Hold: 300 * time.Millisecond,
		Settle: 100 * time.Millisecond, Polling: 0.2, MaxRun: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Idle == nil || res.Idle.Alive != 30 {
		t.Fatalf("idle: %+v %v", res.Idle, res.Problems)
	}
}

func TestRefusesRemote(t *testing.T) {
	_, err := Run(context.Background(), Config{URL: "http://192.0.2.1:3000", Clients: 1, Idle: true})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err %v", err)
	}
}

func TestParseURLs(t *testing.T) {
	one, err := ParseURLs("http://127.0.0.1:3000")
	if err != nil || len(one) != 1 || one[0] != "http://127.0.0.1:3000" {
		t.Fatalf("one: %v %v", one, err)
	}
	three, err := ParseURLs("http://127.0.0.1:3000, http://localhost:3001,http://[::1]:3002")
	if err != nil || len(three) != 3 || three[1] != "http://localhost:3001" {
		t.Fatalf("three: %v %v", three, err)
	}
	for _, s := range []string{
		"", "http://127.0.0.1:3000,", ",http://127.0.0.1:3000",
		"http://127.0.0.1:3000,http://10.0.0.1:3000",  // one remote is enough to refuse
		"http://127.0.0.1:3000,http://127.0.0.1:3000", // twice
		"http://localhost:3000,http://127.0.0.1:3000", // twice, after pinning
		"http://127.0.0.1:3000,https://127.0.0.1:3001",
		strings.Repeat("http://127.0.0.1:3000,", maxServers) + "http://127.0.0.1:4000",
	} {
		if u, err := ParseURLs(s); err == nil {
			t.Errorf("%q: accepted as %v", s, u)
		}
	}
	c := Config{URL: "http://127.0.0.1:3000,http://127.0.0.2:3000", Clients: 10, Senders: 2, Rate: 1, ServerPIDs: []int{1, 2, 3}}
	c.Defaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "one per -url") {
		t.Fatalf("3 pids for 2 urls: %v", err)
	}
	c.ServerPIDs = []int{1, 2}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParsePIDs(t *testing.T) {
	for s, want := range map[string][]int{"": nil, " ": nil, "12": {12}, "12,13, 14": {12, 13, 14}} {
		got, err := ParsePIDs(s)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %v %v, want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"x", "0", "-3", "12,", "12,,13", "12,12", "1.5"} {
		if got, err := ParsePIDs(s); err == nil {
			t.Errorf("%q: accepted as %v", s, got)
		}
	}
}

func TestSumSamples(t *testing.T) {
	t0 := time.Now()
	parts := []ProcSample{
		{At: t0, CPU: 1500 * time.Millisecond, RSS: 10 << 20, HWM: 12 << 20},
		{At: t0.Add(time.Millisecond), CPU: 250 * time.Millisecond, RSS: 20 << 20, HWM: 21 << 20},
		{At: t0, CPU: 10 * time.Millisecond, RSS: 1 << 20, HWM: 1 << 20},
	}
	s := SumSamples(parts)
	if s.CPU != 1760*time.Millisecond || s.RSS != 31<<20 || s.HWM != 34<<20 || !s.At.Equal(t0.Add(time.Millisecond)) || len(s.Parts) != 3 {
		t.Fatalf("%+v", s)
	}
	// A watch over several processes sums them (here: this one, twice
	// over would be refused by ParsePIDs, so this one and its parent).
	w := newProcWatch([]int{os.Getpid(), os.Getppid()})
	if !w.ok {
		t.Skip("cannot read the parent's /proc:", w.err)
	}
	got := w.sample()
	if len(got.Parts) != 2 || got.RSS != got.Parts[0].RSS+got.Parts[1].RSS || got.CPU != got.Parts[0].CPU+got.Parts[1].CPU {
		t.Fatalf("%+v", got)
	}
	if w.peakRSS() < got.RSS || w.peakRSSOf(0) < got.Parts[0].RSS || w.peakRSSOf(5) != 0 {
		t.Fatalf("peaks %d %d", w.peakRSS(), w.peakRSSOf(0))
	}
}

const metricsBefore = `# HELP chat_bus_lag_seconds Time from another server publishing an event to this server receiving it.
# TYPE chat_bus_lag_seconds histogram
chat_bus_lag_seconds_bucket{le="0.0005"} 1
chat_bus_lag_seconds_bucket{le="0.001"} 2
chat_bus_lag_seconds_bucket{le="0.0025"} 2
chat_bus_lag_seconds_bucket{le="0.005"} 2
chat_bus_lag_seconds_bucket{le="+Inf"} 2
chat_bus_lag_seconds_sum 0.001
chat_bus_lag_seconds_count 2
# TYPE chat_messages_delivered_total counter
chat_messages_delivered_total 5
chat_messages_delivered_total_other 99
chat_rate_limited_total{limit="login"} 3
`

const metricsAfter = `chat_bus_lag_seconds_bucket{le="0.001"} 2
chat_bus_lag_seconds_bucket{le="0.0005"} 1
chat_bus_lag_seconds_bucket{le="0.0025"} 52
chat_bus_lag_seconds_bucket{le="0.005"} 101
chat_bus_lag_seconds_bucket{le="+Inf"} 102
chat_bus_lag_seconds_sum 0.301
chat_bus_lag_seconds_count 102
chat_messages_delivered_total 1.005e+03
`

func TestParseMetricsAndQuantiles(t *testing.T) {
	h0, d0, err := ParseMetrics(strings.NewReader(metricsBefore), metricBusLag, metricDelivered)
	if err != nil {
		t.Fatal(err)
	}
	if d0 != 5 || h0.Count != 2 || len(h0.Bounds) != 5 || !math.IsInf(h0.Bounds[4], 1) || h0.Counts[1] != 2 {
		t.Fatalf("before: %+v %v", h0, d0)
	}
	h1, d1, err := ParseMetrics(strings.NewReader(metricsAfter), metricBusLag, metricDelivered)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != 1005 || h1.Bounds[0] != 0.0005 || h1.Counts[0] != 1 { // sorted by le
		t.Fatalf("after: %+v %v", h1, d1)
	}
	d, err := h1.Sub(h0)
	if err != nil {
		t.Fatal(err)
	}
	// 100 observations: 50 in (1ms, 2.5ms], 49 in (2.5ms, 5ms], 1 above 5ms.
	if !slices.Equal(d.Counts, []float64{0, 0, 50, 99, 100}) || d.Count != 100 || math.Abs(d.Sum-0.3) > 1e-9 {
		t.Fatalf("diff %+v", d)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if q := d.Quantile(.5); !near(q, 0.0025) {
		t.Errorf("p50 %v", q)
	}
	if q := d.Quantile(.25); !near(q, 0.001+0.0015*25/50) {
		t.Errorf("p25 %v", q)
	}
	if q := d.Quantile(.99); !near(q, 0.005) {
		t.Errorf("p99 %v", q)
	}
	if q := d.Quantile(1); !near(q, 0.005) { // in +Inf: the highest finite bound
		t.Errorf("p100 %v", q)
	}
	b := busLagOf(d)
	if b.N != 100 || b.P50 != 2.5 || b.P99 != 5 || b.MeanMs != 3 || b.TopMs != 5 {
		t.Errorf("bus lag %+v", b)
	}
	sum, err := d.Add(d)
	if err != nil || sum.Counts[4] != 200 || sum.Count != 200 || d.Counts[4] != 100 {
		t.Fatalf("add %+v %v", sum, err)
	}
	if e := busLagOf(PromHist{}); e.N != 0 || e.P99 != 0 {
		t.Errorf("empty %+v", e)
	}
	if !math.IsNaN(PromHist{}.Quantile(.5)) {
		t.Error("empty quantile")
	}
	if _, err := h0.Sub(h1); err == nil {
		t.Error("a counter going down was accepted")
	}
	if _, err := d.Sub(PromHist{Bounds: []float64{1, math.Inf(1)}, Counts: []float64{0, 0}}); err == nil {
		t.Error("different buckets accepted")
	}
	for _, bad := range []string{"chat_bus_lag_seconds_bucket{le=\"x\"} 1\n", "chat_bus_lag_seconds_count\n",
		"chat_bus_lag_seconds_bucket{le=\"1\"} one\n", "chat_bus_lag_seconds_bucket{} 1\n"} {
		if _, _, err := ParseMetrics(strings.NewReader(bad), metricBusLag, metricDelivered); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// memBus relays events between servers of one test process, in order, as
// the PostgreSQL and NATS buses do between processes.
type memBus struct {
	mu   sync.Mutex
	subs []chan bus.Event
	wg   sync.WaitGroup
}

type memBusConn struct{ b *memBus }

func (c memBusConn) Publish(_ context.Context, e bus.Event) error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	for _, ch := range c.b.subs {
		ch <- e
	}
	return nil
}

func (c memBusConn) Subscribe(h bus.Handler) error {
	ch := make(chan bus.Event, 100000)
	c.b.mu.Lock()
	c.b.subs = append(c.b.subs, ch)
	c.b.mu.Unlock()
	c.b.wg.Add(1)
	go func() {
		defer c.b.wg.Done()
		for e := range ch {
			h.HandleEvent(e)
		}
	}()
	return nil
}

func (c memBusConn) Close() error { return nil }

func (b *memBus) close() {
	b.mu.Lock()
	for _, ch := range b.subs {
		close(ch)
	}
	b.subs = nil
	b.mu.Unlock()
	b.wg.Wait()
}

// TestRunAgainstCluster: three servers on one store, relaying over an
// in-process bus; clients spread over them, every delivery exact, and the
// bus lag read from their /metrics.
func TestRunAgainstCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mb := &memBus{}
	t.Cleanup(mb.close)
	var urls []string
	for range 3 {
		urls = append(urls, serve(t, server.Config{BcryptCost: 4, Bus: memBusConn{mb}}, st))
	}
	res, err := Run(context.Background(), Config{
		URL: strings.Join(urls, ","), Clients: 31, Senders: 4, Rate: 40, Messages: 40, Duration: 5 * time.Second,
		Drain: 10 * time.Second, Settle: 100 * time.Millisecond, Polling: 0.25, Ack: true, XFF: true,
		ServerPID: os.Getpid(), BusLag: true, MaxRun: time.Minute, // one process holds all three

	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		t.Fatalf("problems %v, errors %v", res.Problems, res.FirstErrors)
	}
	if res.Delivered != 40*31 || res.Expected != 40*31 || res.Duplicates != 0 {
		t.Fatalf("delivered %d expected %d duplicates %d", res.Delivered, res.Expected, res.Duplicates)
	}
	if len(res.URLs) != 3 || len(res.Servers) != 3 {
		t.Fatalf("urls %v servers %+v", res.URLs, res.Servers)
	}
	for i, want := range []struct{ clients, senders int }{{11, 2}, {10, 1}, {10, 1}} {
		if sp := res.Servers[i]; sp.Clients != want.clients || sp.Senders != want.senders || sp.URL != urls[i] {
			t.Errorf("server %d: %+v, want %+v", i, sp, want)
		}
	}
	if res.DeliveryLocal == nil || res.DeliveryRemote == nil || int64(res.DeliveryLocal.N+res.DeliveryRemote.N) != res.Delivered || res.DeliveryRemote.N == 0 {
		t.Fatalf("local %+v remote %+v", res.DeliveryLocal, res.DeliveryRemote)
	}
	// Each message is relayed to the two other servers: at least 80
	// message events (presence events may add more).
	if res.BusLag == nil || res.BusLag.N < 80 || res.BusLag.P99 <= 0 || res.BusLag.P50 > res.BusLag.P99 {
		t.Fatalf("bus lag %+v", res.BusLag)
	}
	if res.BusLag.MetricsDelivered < res.Delivered {
		t.Errorf("servers counted %d deliveries, the generator %d", res.BusLag.MetricsDelivered, res.Delivered)
	}
	var tbl strings.Builder
	res.WriteTable(&tbl)
	for _, want := range []string{"1240 of 1240", "bus lag", "other server", "server 3"} {
		if !strings.Contains(tbl.String(), want) {
			t.Fatalf("no %q in the table:\n%s", want, tbl.String())
		}
	}
}

// TestTransports runs every client (senders included) on each transport
// against the real server: deliveries exact, and with transport upgrade
// every client upgraded (2probe, 3probe, pause, 5) with nothing held long.
func TestTransports(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	url := startServer(t)
	for _, tr := range []string{TransportWebSocket, TransportPolling, TransportUpgrade} {
		t.Run(tr, func(t *testing.T) {
			const clients, msgs = 40, 60
			res, err := Run(context.Background(), Config{
				URL: url, Clients: clients, Senders: 3, Rate: 60, Messages: msgs, Duration: 5 * time.Second,
				Drain: 10 * time.Second, Settle: 100 * time.Millisecond, Transport: tr, Ack: true, XFF: true,
				ServerPID: os.Getpid(), MaxRun: time.Minute,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK {
				t.Fatalf("problems %v, errors %v, upgrade %+v", res.Problems, res.FirstErrors, res.Upgrade)
			}
			if res.Delivered != clients*msgs || res.Expected != clients*msgs || res.Duplicates != 0 || res.AcksOK != msgs {
				t.Fatalf("delivered %d expected %d duplicates %d acks %d", res.Delivered, res.Expected, res.Duplicates, res.AcksOK)
			}
			if res.Transport != tr {
				t.Fatalf("transport %q", res.Transport)
			}
			wantPolling := 0
			if tr == TransportPolling {
				wantPolling = clients
			}
			if res.PollingClients != wantPolling {
				t.Fatalf("%d clients on polling at the end, want %d", res.PollingClients, wantPolling)
			}
			switch tr {
			case TransportUpgrade:
				u := res.Upgrade
				if u == nil || u.Attempted != clients || u.Completed != clients || u.Failed != 0 || u.Time.N != clients {
					t.Fatalf("upgrade %+v", u)
				}
			default:
				if res.Upgrade != nil {
					t.Fatalf("upgrade %+v without upgrades", res.Upgrade)
				}
			}
			if tr != TransportWebSocket && (res.EventWait.N < clients || res.EventWait.MaxMs > 1000) {
				t.Fatalf("event wait %+v", res.EventWait)
			}
			var tbl strings.Builder
			res.WriteTable(&tbl)
			if want := fmt.Sprintf("%d of %d", clients*msgs, clients*msgs); !strings.Contains(tbl.String(), want) ||
				tr == TransportUpgrade && !strings.Contains(tbl.String(), "40 of 40 completed") {
				t.Fatalf("table:\n%s", tbl.String())
			}
		})
	}
}
