package loadgen

import (
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Result is everything one run measured. It is printed as one JSON line.
type Result struct {
	Tool       string   `json:"tool"`
	Label      string   `json:"label,omitempty"`
	ServerName string   `json:"server_name,omitempty"`
	Scenario   string   `json:"scenario,omitempty"`
	Mode       string   `json:"mode"` // "messages" or "idle"
	URL        string   `json:"url"`
	URLs       []string `json:"urls,omitempty"` // several servers: -url split on commas
	RunID      string   `json:"run_id"`
	Start      string   `json:"start"`

	Clients   int    `json:"clients"`
	Senders   int    `json:"senders"`
	Transport string `json:"transport"` // websocket, polling or upgrade
	// PollingClients: clients on long-polling at the end (-polling share,
	// transport polling, and upgrades that did not happen).
	PollingClients  int     `json:"polling_clients"`
	Rate            float64 `json:"rate"`
	MessagesPlanned int     `json:"messages_planned"`
	MessagesSent    int     `json:"messages_sent"`
	Receivers       int     `json:"receivers"` // clients alive when sending began

	// The server's Engine.IO heartbeat, from its open packet.
	PingIntervalMs int64 `json:"server_ping_interval_ms"`
	PingTimeoutMs  int64 `json:"server_ping_timeout_ms"`

	SenderSetupS float64 `json:"sender_setup_s"` // connect + register + login of the senders
	Connect      struct {
		OK     int     `json:"ok"`
		Failed int     `json:"failed"`
		TotalS float64 `json:"total_s"` // first dial to last connected
		P50    float64 `json:"p50_ms"`
		P95    float64 `json:"p95_ms"`
		P99    float64 `json:"p99_ms"`
		Max    float64 `json:"max_ms"`
	} `json:"connect"`
	Ready int `json:"ready"` // connections that received `load all messages`

	SendPhaseS     float64 `json:"send_phase_s"`
	DrainS         float64 `json:"drain_s"`
	MessagePhaseS  float64 `json:"message_phase_s"`
	PacerLateMaxMs float64 `json:"pacer_late_max_ms"`

	// Fanout: per message, time from send to its arrival at the last of
	// the receivers. Delivery: per delivery, send to arrival.
	Fanout             Summary  `json:"fanout"`
	Delivery           Summary  `json:"delivery"`
	Ack                *Summary `json:"ack,omitempty"`
	MessagesIncomplete int      `json:"messages_incomplete"`

	// Several servers: deliveries to a client on the sender's server, and
	// to a client on another server (relayed over the bus).
	DeliveryLocal  *Summary `json:"delivery_local,omitempty"`
	DeliveryRemote *Summary `json:"delivery_remote,omitempty"`

	Delivered        int64   `json:"delivered"`
	Expected         int64   `json:"expected"`
	Missing          int64   `json:"missing"`
	Duplicates       int64   `json:"duplicates"`
	Foreign          int64   `json:"foreign"`
	Reloads          int64   `json:"reloads"`
	AcksOK           int64   `json:"acks_ok"`
	AcksFailed       int64   `json:"acks_failed"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	Disconnects      int     `json:"disconnects"`

	// Server: one process, or the sum over the servers of -server-pid.
	Server struct {
		PID                 int     `json:"pid,omitempty"`
		PIDs                []int   `json:"pids,omitempty"`
		RSSBeforeMB         float64 `json:"rss_before_mb"`
		RSSAfterMB          float64 `json:"rss_after_mb"`
		RSSPeakMB           float64 `json:"rss_peak_mb"` // highest of the 1 s samples
		HWMMB               float64 `json:"vm_hwm_mb"`   // kernel's peak RSS of the process's life
		CPUConnectS         float64 `json:"cpu_connect_s"`
		IdleCPUPct          float64 `json:"idle_cpu_pct"` // during -settle
		CPUMessagesS        float64 `json:"cpu_messages_s"`
		CPUMessagesPct      float64 `json:"cpu_messages_pct"`
		CPUUsPerDelivery    float64 `json:"cpu_us_per_delivery"`
		DeliveriesPerCPUSec float64 `json:"deliveries_per_cpu_s"`
	} `json:"server"`
	Loadgen struct {
		CPUConnectS      float64 `json:"cpu_connect_s"`
		CPUMessagesS     float64 `json:"cpu_messages_s"`
		CPUHoldS         float64 `json:"cpu_hold_s,omitempty"`
		CPUUsPerDelivery float64 `json:"cpu_us_per_delivery"`
		RSSMB            float64 `json:"rss_mb"`
	} `json:"loadgen"`
	Idle *IdleResult `json:"idle,omitempty"`
	// Upgrade: transport upgrade, what became of the upgrades.
	Upgrade *UpgradeResult `json:"upgrade,omitempty"`
	// EventWait: packets of polling-first clients held before they went
	// on the wire (a POST in flight, or the upgrade's pause).
	EventWait EventWait `json:"event_wait"`
	// Servers: one entry per -url when there are several.
	Servers []ServerPart `json:"servers,omitempty"`
	// BusLag: with -bus-lag, the servers' chat_bus_lag_seconds over the
	// messages phase, all servers together.
	BusLag *BusLag `json:"bus_lag,omitempty"`

	GoMaxProcs   int               `json:"gomaxprocs"`
	LoadAvgStart string            `json:"loadavg_start"`
	LoadAvgEnd   string            `json:"loadavg_end"`
	FirstErrors  map[string]string `json:"first_errors,omitempty"`
	Problems     []string          `json:"problems"`
	OK           bool              `json:"ok"`
}

// ServerPart is what was measured of one server of several.
type ServerPart struct {
	URL            string  `json:"url"`
	PID            int     `json:"pid,omitempty"`
	Clients        int     `json:"clients"` // connected to it
	Senders        int     `json:"senders"`
	RSSBeforeMB    float64 `json:"rss_before_mb"`
	RSSAfterMB     float64 `json:"rss_after_mb"`
	RSSPeakMB      float64 `json:"rss_peak_mb"`
	CPUConnectS    float64 `json:"cpu_connect_s"`
	CPUMessagesS   float64 `json:"cpu_messages_s"`
	CPUMessagesPct float64 `json:"cpu_messages_pct"`
	// From its /metrics (-bus-lag), over the messages phase.
	MetricsDelivered int64   `json:"metrics_delivered,omitempty"`
	BusLag           *BusLag `json:"bus_lag,omitempty"`
}

// BusLag is a bus lag distribution computed from Prometheus histogram
// buckets (their difference between two scrapes): publish on one server to
// handled on another. Quantiles are interpolated linearly inside a bucket,
// as PromQL's histogram_quantile does, so their precision is the bucket
// width; a quantile in the +Inf bucket is reported as the highest bound.
type BusLag struct {
	N      int64   `json:"n"`
	MeanMs float64 `json:"mean_ms"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	// TopMs is the highest finite bucket bound: a quantile reported equal
	// to it may be anywhere above it (the +Inf bucket).
	TopMs float64 `json:"top_bucket_ms"`
	// MetricsDelivered: chat_messages_delivered_total over the same
	// interval, summed over the servers (events handed to sockets).
	MetricsDelivered int64 `json:"metrics_delivered,omitempty"`
}

// UpgradeResult counts the Engine.IO upgrades of transport upgrade.
type UpgradeResult struct {
	Attempted int64 `json:"attempted"`
	Completed int64 `json:"completed"`
	// Failed: probes that did not end in an upgrade. Before `3probe` the
	// client stays on polling; Stalled ones failed after it, which leaves
	// engine.io-client paused until its ping timeout.
	Failed  int64          `json:"failed"`
	Stalled int64          `json:"stalled"`
	Reasons map[string]int `json:"reasons,omitempty"` // failure reason → count
	// Time: from the Engine.IO open (first GET) to the upgrade done.
	Time Summary `json:"time"`
}

// EventWait is the time packets waited between being emitted and going
// on the wire (polling-first clients only; a WebSocket write is at once).
type EventWait struct {
	N      int64   `json:"n"`
	Over1s int64   `json:"over_1s"`
	MaxMs  float64 `json:"max_ms"`
}

// IdleResult is what -idle measures.
type IdleResult struct {
	HoldS                 float64 `json:"hold_s"`
	Alive                 int     `json:"alive"`
	ServerKBPerConn       float64 `json:"server_kb_per_conn"` // (RSS after hold − RSS before connecting) / alive
	ServerCPUUsPerConnSec float64 `json:"server_cpu_us_per_conn_s"`
	LoadgenRSS            float64 `json:"loadgen_rss_mb"`
	LoadgenKBPerConn      float64 `json:"loadgen_kb_per_conn"`
}

func secs(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }
func mb(b int64) float64           { return math.Round(float64(b)/(1<<20)*10) / 10 }
func round2(f float64) float64     { return math.Round(f*100) / 100 }

// WriteTable prints the result for people.
func (res *Result) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t"+f+"\n", append([]any{k}, a...)...) }
	title := strings.TrimSpace(strings.Join([]string{res.ServerName, res.Scenario, res.Label}, " "))
	status := "OK"
	if !res.OK {
		status = "PROBLEMS"
	}
	fmt.Fprintf(tw, "== loadgen %s (%s) %s\n", res.Mode, title, status)
	row("url", "%s", res.URL)
	row("clients", "%d (%d senders), transport %s; %d on polling at the end", res.Clients, res.Senders, res.Transport, res.PollingClients)
	if u := res.Upgrade; u != nil {
		line := fmt.Sprintf("%d of %d completed, %d failed (%d stalled after 3probe); open → upgraded p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			u.Completed, u.Attempted, u.Failed, u.Stalled, u.Time.P50, u.Time.P99, u.Time.Max)
		if len(u.Reasons) > 0 {
			line += "; " + reasonsText(u.Reasons)
		}
		row("upgrades", "%s", line)
	}
	if res.EventWait.N > 0 {
		row("packets held", "%d, longest %.1f ms, %d over 1 s", res.EventWait.N, res.EventWait.MaxMs, res.EventWait.Over1s)
	}
	row("connect", "%d ok, %d failed in %.2fs; p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		res.Connect.OK, res.Connect.Failed, res.Connect.TotalS, res.Connect.P50, res.Connect.P99, res.Connect.Max)
	if res.Mode == "messages" {
		row("messages", "%d sent of %d at %.1f/s over %.1fs; drained in %.2fs",
			res.MessagesSent, res.MessagesPlanned, res.Rate, res.SendPhaseS, res.DrainS)
		row("deliveries", "%d of %d (missing %d, duplicates %d), %.0f/s",
			res.Delivered, res.Expected, res.Missing, res.Duplicates, res.DeliveriesPerSec)
		row("fan-out (to all)", "p50 %.1f  p95 %.1f  p99 %.1f  max %.1f ms", res.Fanout.P50, res.Fanout.P95, res.Fanout.P99, res.Fanout.Max)
		row("per delivery", "p50 %.1f  p95 %.1f  p99 %.1f  max %.1f ms", res.Delivery.P50, res.Delivery.P95, res.Delivery.P99, res.Delivery.Max)
		if res.DeliveryLocal != nil && res.DeliveryRemote != nil {
			row("  same server", "p50 %.1f  p99 %.1f  max %.1f ms (%d deliveries)", res.DeliveryLocal.P50, res.DeliveryLocal.P99, res.DeliveryLocal.Max, res.DeliveryLocal.N)
			row("  other server", "p50 %.1f  p99 %.1f  max %.1f ms (%d deliveries)", res.DeliveryRemote.P50, res.DeliveryRemote.P99, res.DeliveryRemote.Max, res.DeliveryRemote.N)
		}
		if res.Ack != nil {
			row("send ack", "p50 %.1f  p99 %.1f  max %.1f ms (%d ok, %d refused)", res.Ack.P50, res.Ack.P99, res.Ack.Max, res.AcksOK, res.AcksFailed)
		}
	}
	if res.BusLag != nil {
		if res.BusLag.N > 0 {
			row("bus lag", "p50 %.2f  p90 %.2f  p99 %.2f  mean %.2f ms (%d events, from chat_bus_lag_seconds buckets; %.0f ms means %.0f ms or more)",
				res.BusLag.P50, res.BusLag.P90, res.BusLag.P99, res.BusLag.MeanMs, res.BusLag.N, res.BusLag.TopMs, res.BusLag.TopMs)
		} else {
			row("bus lag", "no bus events (one server?)")
		}
	}
	if res.Server.PID > 0 || len(res.Server.PIDs) > 0 {
		if len(res.Server.PIDs) > 1 {
			row("servers", "%d processes, summed below", len(res.Server.PIDs))
		}
		row("server RSS", "%.1f MB before, %.1f after, %.1f peak", res.Server.RSSBeforeMB, res.Server.RSSAfterMB, res.Server.RSSPeakMB)
		row("server CPU", "connect %.2fs, idle %.1f%%, messages %.2fs (%.0f%%)",
			res.Server.CPUConnectS, res.Server.IdleCPUPct, res.Server.CPUMessagesS, res.Server.CPUMessagesPct)
		if res.Mode == "messages" {
			row("server per delivery", "%.2f µs CPU; %.0f deliveries per CPU-second", res.Server.CPUUsPerDelivery, res.Server.DeliveriesPerCPUSec)
		}
	}
	for i, sp := range res.Servers {
		line := fmt.Sprintf("%s pid %d: %d clients (%d senders); CPU connect %.2fs, messages %.2fs (%.0f%%); RSS %.1f → %.1f MB",
			sp.URL, sp.PID, sp.Clients, sp.Senders, sp.CPUConnectS, sp.CPUMessagesS, sp.CPUMessagesPct, sp.RSSBeforeMB, sp.RSSAfterMB)
		if sp.BusLag != nil && sp.BusLag.N > 0 {
			line += fmt.Sprintf("; bus lag p50 %.2f p99 %.2f ms (%d)", sp.BusLag.P50, sp.BusLag.P99, sp.BusLag.N)
		}
		row(fmt.Sprintf("server %d", i+1), "%s", line)
	}
	if res.Mode == "messages" {
		row("loadgen per delivery", "%.2f µs CPU (%.2fs)", res.Loadgen.CPUUsPerDelivery, res.Loadgen.CPUMessagesS)
	}
	if res.Idle != nil {
		row("idle", "%d alive after %.1fs; server %.1f KB/conn, %.2f µs CPU per conn-second; loadgen %.1f KB/conn",
			res.Idle.Alive, res.Idle.HoldS, res.Idle.ServerKBPerConn, res.Idle.ServerCPUUsPerConnSec, res.Idle.LoadgenKBPerConn)
	}
	row("load average", "%s → %s", res.LoadAvgStart, res.LoadAvgEnd)
	for _, p := range res.Problems {
		row("problem", "%s", p)
	}
	for k, v := range res.FirstErrors {
		row("first "+k+" error", "%.200s", v)
	}
	tw.Flush()
}

// procWatch samples the server processes (one, or the servers of a
// cluster), remembering the peak RSS seen: of the sum, and of each.
type procWatch struct {
	pids []int
	ok   bool
	err  error

	mu    sync.Mutex
	peak  int64
	peaks []int64
}

func newProcWatch(pids []int) *procWatch {
	w := &procWatch{pids: pids, peaks: make([]int64, len(pids))}
	if len(pids) > 0 {
		w.ok = true
		for _, pid := range pids {
			if _, err := ReadProc(pid); err != nil {
				w.ok, w.err = false, err
				break
			}
		}
	}
	return w
}

// sample reads every process; with several, the result is their sum with
// each one in Parts.
func (w *procWatch) sample() ProcSample {
	if !w.ok {
		return ProcSample{At: time.Now()}
	}
	parts := make([]ProcSample, len(w.pids))
	for i, pid := range w.pids {
		s, err := ReadProc(pid)
		if err != nil {
			return ProcSample{At: time.Now()}
		}
		parts[i] = s
	}
	var s ProcSample
	if len(parts) == 1 {
		s = parts[0]
	} else {
		s = SumSamples(parts)
	}
	w.mu.Lock()
	w.peak = max(w.peak, s.RSS)
	for i, p := range parts {
		w.peaks[i] = max(w.peaks[i], p.RSS)
	}
	w.mu.Unlock()
	return s
}

func (w *procWatch) peakRSS() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

func (w *procWatch) peakRSSOf(i int) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if i < 0 || i >= len(w.peaks) {
		return 0
	}
	return w.peaks[i]
}

// progress prints one line a second until the returned stop is called.
func (r *run) progress(srv *procWatch) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		prev, prevSelf := srv.sample(), selfCPU()
		prevDel := int64(0)
		for {
			select {
			case <-done:
				return
			case <-r.ctx.Done():
				return
			case <-t.C:
			}
			cur, self := srv.sample(), selfCPU()
			del := r.delivered.Load()
			if r.cfg.Progress == nil {
				continue
			}
			el := cur.At.Sub(prev.At).Seconds()
			line := fmt.Sprintf("[%5.1fs] %-8s conns %d/%d (fail %d, ready %d, dropped %d)",
				time.Since(start).Seconds(), r.phase.Load(), r.alive.Load(), r.cfg.Clients,
				r.connectFail.Load(), r.ready.Load(), r.disconnects.Load())
			if r.m > 0 {
				exp := r.sent.Load() * max(r.n0.Load(), 0)
				line += fmt.Sprintf(" | sent %d/%d delivered %d/%d (%.0f/s)", r.sent.Load(), r.m, del, exp, float64(del-prevDel)/el)
			}
			if srv.ok && el > 0 {
				line += fmt.Sprintf(" | server cpu %3.0f%% rss %.0fMB", 100*(cur.CPU-prev.CPU).Seconds()/el, float64(cur.RSS)/(1<<20))
			}
			line += fmt.Sprintf(" | loadgen cpu %3.0f%%", 100*(self-prevSelf).Seconds()/el)
			fmt.Fprintln(r.cfg.Progress, line)
			prev, prevSelf, prevDel = cur, self, del
		}
	}()
	return func() { close(done); <-stopped }
}
