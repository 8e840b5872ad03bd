// Command ltreport turns the JSON lines collected by loadtest/compare.sh
// (loadgen results, mocha timings, a machine description) into
// loadtest/RESULTS.md: Go and Node side by side, medians of the runs, ratios.
//
//	ltreport -in results.jsonl -out loadtest/RESULTS.md
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/chatd/chat/loadtest/loadgen"
)

// record is one line of the input: a loadgen result, or one of compare.sh's
// own records (tool "mocha", "meta", "maxidle").
type record struct {
	loadgen.Result
	ElapsedS float64           `json:"elapsed_s"`
	RegS     *float64          `json:"registered_s"`
	RegCount int               `json:"registered"`
	Status   int               `json:"status"`
	Meta     map[string]string `json:"meta"`
}

type scenario struct {
	name, title string
}

// The scenarios compare.sh runs, in report order.
var scenarios = []scenario{
	{"quick", "200 clients × 10 msg/s × 10 s, 10 % of them on long-polling (a smoke test: a polling delivery costs both servers and the generator many times a WebSocket one, so its per-delivery numbers are not comparable with the scenarios below)"},
	{"c1000r20", "1,000 clients × 20 msg/s"},
	{"c5000r5", "5,000 clients × 5 msg/s"},
	{"c5000r20", "5,000 clients × 20 msg/s"},
	{"c5000r50", "5,000 clients × 50 msg/s"},
	{"idle10k", "10,000 idle connections"},
}

func main() {
	in := flag.String("in", "", "JSON lines from compare.sh")
	out := flag.String("out", "", "Markdown file to write (default stdout)")
	flag.Parse()
	recs, err := read(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ltreport:", err)
		os.Exit(1)
	}
	md := render(recs)
	if *out == "" {
		fmt.Print(md)
		return
	}
	if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "ltreport:", err)
		os.Exit(1)
	}
}

func read(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func pick(rs []record, server, scen string) []record {
	var out []record
	for _, r := range rs {
		if r.Tool == "loadgen" && r.ServerName == server && r.Scenario == scen {
			out = append(out, r)
		}
	}
	return out
}

func vals(rs []record, f func(record) float64) []float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	return v
}

func num(x float64, prec int) string {
	if math.IsNaN(x) {
		return "–"
	}
	s := fmt.Sprintf("%.*f", prec, x)
	// thousands separators for readability
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	res := b.String()
	if neg {
		res = "-" + res
	}
	if frac != "" {
		res += "." + frac
	}
	return res
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

type metric struct {
	name string
	prec int
	f    func(record) float64
	// lowerBetter marks metrics where a ratio below 1 favours Go.
	note string
}

var msgMetrics = []metric{
	{"server CPU per delivery (µs)", 2, func(r record) float64 { return r.Server.CPUUsPerDelivery }, "lower is better"},
	{"deliveries per server CPU-second", 0, func(r record) float64 { return r.Server.DeliveriesPerCPUSec }, "higher is better"},
	{"server CPU during messages (% of one core)", 0, func(r record) float64 { return r.Server.CPUMessagesPct }, ""},
	{"deliveries per second (achieved)", 0, func(r record) float64 { return r.DeliveriesPerSec }, "offered: clients × rate"},
	{"fan-out to all clients p50 (ms)", 1, func(r record) float64 { return r.Fanout.P50 }, "send → last client has it"},
	{"fan-out p95 (ms)", 1, func(r record) float64 { return r.Fanout.P95 }, ""},
	{"fan-out p99 (ms)", 1, func(r record) float64 { return r.Fanout.P99 }, ""},
	{"fan-out max (ms)", 1, func(r record) float64 { return r.Fanout.Max }, ""},
	{"per-delivery latency p50 (ms)", 1, func(r record) float64 { return r.Delivery.P50 }, ""},
	{"drain after last send (s)", 2, func(r record) float64 { return r.DrainS }, "capped by -drain"},
	{"missing deliveries (sum of runs)", 0, nil, "must be 0"},
	{"messages that reached every client (sum of runs)", 0, nil, "fan-out percentiles are over these only"},
	{"connections dropped by the server (sum)", 0, nil, ""},
	{"connect all clients (s)", 2, func(r record) float64 { return r.Connect.TotalS }, "ramp 1,000/s"},
	{"connect p99 (ms)", 1, func(r record) float64 { return r.Connect.P99 }, ""},
	{"server CPU to accept the clients (s)", 2, func(r record) float64 { return r.Server.CPUConnectS }, ""},
	{"server idle CPU (% of one core)", 1, func(r record) float64 { return r.Server.IdleCPUPct }, "during the 2 s pause before sending: heartbeats"},
	{"server heartbeat: ping interval / timeout (s)", 0, nil, "from the server's Engine.IO handshake"},
	{"server RSS peak (MB)", 1, func(r record) float64 { return r.Server.RSSPeakMB }, ""},
	{"load generator CPU per delivery (µs)", 2, func(r record) float64 { return r.Loadgen.CPUUsPerDelivery }, "must stay well below the server's"},
}

var idleMetrics = []metric{
	{"server RSS per connection (KB)", 1, func(r record) float64 { return r.Idle.ServerKBPerConn }, "(RSS after hold − RSS before) / connections"},
	{"server RSS after connecting (MB)", 1, func(r record) float64 { return r.Server.RSSAfterMB }, ""},
	{"server CPU per connection-second (µs)", 2, func(r record) float64 { return r.Idle.ServerCPUUsPerConnSec }, "heartbeats, over the 30 s hold"},
	{"server heartbeat: ping interval / timeout (s)", 0, nil, "from the server's Engine.IO handshake"},
	{"connect all (s)", 2, func(r record) float64 { return r.Connect.TotalS }, ""},
	{"connect p99 (ms)", 1, func(r record) float64 { return r.Connect.P99 }, ""},
	{"server CPU to accept them (s)", 2, func(r record) float64 { return r.Server.CPUConnectS }, ""},
	{"alive at the end (min of runs)", 0, nil, ""},
	{"connections dropped by the server (sum)", 0, nil, ""},
	{"load generator RSS per connection (KB)", 1, func(r record) float64 { return r.Idle.LoadgenKBPerConn }, ""},
}

func sumInt(rs []record, f func(record) int64) string {
	if len(rs) == 0 {
		return "–"
	}
	var s int64
	for _, r := range rs {
		s += f(r)
	}
	return num(float64(s), 0)
}

func render(recs []record) string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	meta := map[string]string{}
	for _, r := range recs {
		if r.Tool == "meta" {
			for k, v := range r.Meta {
				meta[k] = v
			}
		}
	}
	w("# Load test: Go server vs Node reference\n\n")
	w("Generated by `loadtest/compare.sh%s` on %s. Do not edit: run the command again.\n", meta["args"], meta["date"])
	w("How it works and how to read it: [README.md](README.md#compare-go-vs-node).\n\n")
	w("## Machine\n\n| | |\n|---|---|\n")
	for _, k := range []string{"cpu", "nproc", "ram", "kernel", "go", "node", "postgres", "nofile", "commit", "loadavg_start", "loadavg_end", "settings"} {
		if v, ok := meta[k]; ok {
			w("| %s | %s |\n", k, v)
		}
	}
	w("\nValues are the **median of the runs** (A/B alternated, each on a fresh server and a fresh database); ratios are Go ÷ Node.\n")
	w("CPU is the server process's user+system time from `/proc/<pid>/stat` over the message phase (first send to last delivery); it excludes PostgreSQL's own processes.\n")
	w("CPU per delivery compares efficiency. Achieved deliveries per second and latency compare capacity on this machine, where the generator itself takes part of the 2 cores, and where the Node reference runs its JavaScript on one thread (its CPU tops out a little above 100 %% of one core, libuv and GC threads included) while the Go server can use both cores.\n\n")

	for _, sc := range scenarios {
		g, n := pick(recs, "go", sc.name), pick(recs, "node", sc.name)
		if len(g) == 0 && len(n) == 0 {
			continue
		}
		w("## %s\n\n", sc.title)
		w("Runs: Go %d, Node %d.\n\n", len(g), len(n))
		w("| metric | Go | Node | Go/Node | |\n|---|---:|---:|---:|---|\n")
		ms := msgMetrics
		if sc.name == "idle10k" {
			ms = idleMetrics
		}
		for _, m := range ms {
			var gv, nv string
			rat := "–"
			switch m.name {
			case "missing deliveries (sum of runs)":
				gv, nv = sumInt(g, func(r record) int64 { return r.Missing }), sumInt(n, func(r record) int64 { return r.Missing })
			case "messages that reached every client (sum of runs)":
				cnt := func(rs []record) string {
					if len(rs) == 0 {
						return "–"
					}
					done, sent := 0, 0
					for _, r := range rs {
						done += r.Fanout.N
						sent += r.MessagesSent
					}
					return fmt.Sprintf("%s of %s", num(float64(done), 0), num(float64(sent), 0))
				}
				gv, nv = cnt(g), cnt(n)
			case "server heartbeat: ping interval / timeout (s)":
				hb := func(rs []record) string {
					if len(rs) == 0 || rs[0].PingIntervalMs == 0 {
						return "–"
					}
					return fmt.Sprintf("%g / %g", float64(rs[0].PingIntervalMs)/1000, float64(rs[0].PingTimeoutMs)/1000)
				}
				gv, nv = hb(g), hb(n)
			case "connections dropped by the server (sum)":
				gv, nv = sumInt(g, func(r record) int64 { return int64(r.Disconnects) }), sumInt(n, func(r record) int64 { return int64(r.Disconnects) })
			case "alive at the end (min of runs)":
				minAlive := func(rs []record) string {
					if len(rs) == 0 {
						return "–"
					}
					m := math.MaxInt
					for _, r := range rs {
						if r.Idle != nil {
							m = min(m, r.Idle.Alive)
						} else {
							m = 0
						}
					}
					return fmt.Sprintf("%s of %s", num(float64(m), 0), num(float64(rs[0].Clients), 0))
				}
				gv, nv = minAlive(g), minAlive(n)
			default:
				f := m.f
				safe := func(r record) float64 {
					if sc.name == "idle10k" && r.Idle == nil {
						return math.NaN()
					}
					return f(r)
				}
				gm, nm := median(vals(g, safe)), median(vals(n, safe))
				gv, nv, rat = num(gm, m.prec), num(nm, m.prec), ratio(gm, nm)
			}
			w("| %s | %s | %s | %s | %s |\n", m.name, gv, nv, rat, m.note)
		}
		w("\n")
		problems(&b, append(g, n...))
	}

	// Largest number of idle connections held.
	var max []record
	for _, r := range recs {
		if r.Tool == "loadgen" && strings.HasPrefix(r.Scenario, "maxidle") {
			max = append(max, r)
		}
	}
	if len(max) > 0 {
		w("## Most idle connections held\n\n")
		w("Bounded search, stopping at the first failure: each step connects N clients (ramp 2,000/s), holds them 30 s (at least one heartbeat for both servers) and passes only if every one connected and stayed connected. The ceiling of this machine is the **hard open-files limit** (`%s`), which neither the server nor the generator can raise: neither process can hold more than that many sockets.\n\n", meta["nofile"])
		w("| server | clients | result | connect (s) | server RSS (MB) | KB/conn | problems |\n|---|---:|---|---:|---:|---:|---|\n")
		for _, r := range max {
			res := "held"
			if !r.OK {
				res = "**failed**"
			}
			kb := math.NaN()
			if r.Idle != nil {
				kb = r.Idle.ServerKBPerConn
			}
			w("| %s | %s | %s | %s | %s | %s | %s |\n", r.ServerName, num(float64(r.Clients), 0), res, num(r.Connect.TotalS, 1),
				num(r.Server.RSSAfterMB, 0), num(kb, 1), strings.Join(nonEmpty(append(r.Problems, r.FirstErrors["disconnect"])), "; "))
		}
		w("\n")
	}

	// Heartbeat race check.
	var race []record
	for _, r := range recs {
		if r.Tool == "loadgen" && r.Scenario == "race" {
			race = append(race, r)
		}
	}
	if len(race) > 0 {
		w("## Heartbeat check\n\n")
		w("2,000 idle connections held 30 s, pongs answered at once (as a client on the same host or LAN does): the regression check for the library's heartbeat race (README, *The heartbeat race*), which dropped 5–9 of 2,000 such connections before the server's workaround.\n\n")
		w("| server | clients | dropped by the server | first error |\n|---|---:|---:|---|\n")
		for _, r := range race {
			w("| %s | %s | %d | %s |\n", r.ServerName, num(float64(r.Clients), 0), r.Disconnects, r.FirstErrors["disconnect"])
		}
		w("\n")
	}

	// Mocha.
	var mocha []record
	for _, r := range recs {
		if r.Tool == "mocha" {
			mocha = append(mocha, r)
		}
	}
	if len(mocha) > 0 {
		w("## The report's 450-user registration test (mocha)\n\n")
		w("`loadtest/test/scalability.test.js` (`npx mocha`) against each server on a fresh PostgreSQL database, bcrypt cost 10 on both: 450 hashes of about 63 ms, some 28 CPU-seconds, so at best about 14 s on 2 idle cores, and the test's own 30 s limit fails when other work shares the cores. Two times: mocha's wall time (pass or fail), and the time from mocha's start until the last row arrived in `user_table` (polled every 0.25 s until 450 rows, or 5 s without a new one after mocha ended), which measures the registrations even when mocha gave up first.\n\n")
		w("| | Go | Node | Go/Node |\n|---|---:|---:|---:|\n")
		col := func(server string, f func(record) (float64, bool)) []float64 {
			var v []float64
			for _, r := range mocha {
				if r.ServerName == server {
					if x, ok := f(r); ok {
						v = append(v, x)
					}
				}
			}
			return v
		}
		el := func(r record) (float64, bool) { return r.ElapsedS, true }
		reg := func(r record) (float64, bool) {
			if r.RegS == nil || r.RegCount < 450 {
				return 0, false
			}
			return *r.RegS, true
		}
		gm, nm := median(col("go", reg)), median(col("node", reg))
		w("| all 450 users stored, median of the runs that stored all (s) | %s | %s | %s |\n", num(gm, 2), num(nm, 2), ratio(gm, nm))
		gm, nm = median(col("go", el)), median(col("node", el))
		w("| mocha wall time, median (s) | %s | %s | %s |\n", num(gm, 2), num(nm, 2), ratio(gm, nm))
		pass := func(server string) string {
			ok, all := 0, 0
			var times []string
			for _, r := range mocha {
				if r.ServerName == server {
					all++
					if r.Status == 0 {
						ok++
					}
					s := "–"
					if r.RegS != nil {
						s = fmt.Sprintf("%d users, the last after %s s", r.RegCount, num(*r.RegS, 1))
					}
					times = append(times, fmt.Sprintf("%s (load %s)", s, r.LoadAvgStart))
				}
			}
			return fmt.Sprintf("%d of %d; %s", ok, all, strings.Join(times, "; "))
		}
		w("| mocha passed | %s | %s | |\n\n", pass("go"), pass("node"))
	}

	// Every run.
	w("## Every run\n\n")
	w("| scenario | server | run | ok | clients | delivered / expected | fan-out p50 / p99 (ms) | server µs/delivery | loadgen µs/delivery | server CPU s | RSS peak MB | load avg at start |\n")
	w("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range recs {
		if r.Tool != "loadgen" {
			continue
		}
		ok := "yes"
		if !r.OK {
			ok = "**no**"
		}
		del := "–"
		fan := "–"
		if r.Mode == "messages" {
			del = fmt.Sprintf("%s / %s", num(float64(r.Delivered), 0), num(float64(r.Expected), 0))
			fan = fmt.Sprintf("%s / %s", num(r.Fanout.P50, 1), num(r.Fanout.P99, 1))
		}
		srvUs, lgUs, srvCPU := "–", "–", "–"
		if r.Mode == "messages" {
			srvUs, lgUs, srvCPU = num(r.Server.CPUUsPerDelivery, 2), num(r.Loadgen.CPUUsPerDelivery, 2), num(r.Server.CPUMessagesS, 2)
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Scenario, r.ServerName, r.Label, ok, num(float64(r.Clients), 0),
			del, fan, srvUs, lgUs, srvCPU, num(r.Server.RSSPeakMB, 0), r.LoadAvgStart)
	}
	w("\n")
	return b.String()
}

// problems lists what went wrong in runs, if anything.
func problems(b *strings.Builder, rs []record) {
	var lines []string
	for _, r := range rs {
		for _, p := range r.Problems {
			lines = append(lines, fmt.Sprintf("- %s %s: %s", r.ServerName, r.Label, p))
		}
		if e := r.FirstErrors["disconnect"]; e != "" {
			lines = append(lines, fmt.Sprintf("- %s %s: first drop: %s", r.ServerName, r.Label, e))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "Problems:\n\n%s\n\n", strings.Join(lines, "\n"))
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
