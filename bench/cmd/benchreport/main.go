// Command benchreport turns the raw `go test -bench` output that
// bench/run.sh keeps, one file per section in bench/results/<section>.txt,
// into bench/RESULTS.md: for every benchmark the median of the runs
// (-count) with the lowest and highest, and per section the figures the
// docs cite (cost per delivery, a room against general, search latency per
// store, ...).
//
//	go run ./bench/cmd/benchreport -in bench/results -out bench/RESULTS.md
//
// The files are what `go test -bench` printed, so benchstat reads them as
// they are; bench/run.sh adds lines of the form "# key: value" (the
// section, date, commit, machine, load average before and after, each
// command run), which benchstat ignores and this command reads.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

func main() {
	in := flag.String("in", "bench/results", "folder of raw results, one <section>.txt per section")
	out := flag.String("out", "", "Markdown file to write (default stdout)")
	flag.Parse()
	runs, err := readDir(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	md := render(runs)
	if *out == "" {
		fmt.Print(md)
		return
	}
	if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// run is one section's file: what bench/run.sh said about the run, and
// every result line.
type run struct {
	section string
	meta    map[string][]string // "# key: value" lines, in order
	results []result
	// failures are "--- FAIL" lines: a benchmark that failed has no result.
	failures []string
	goCPU    string // go test's own "cpu:" line
}

func (r *run) get(key string) string {
	if v := r.meta[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// result is one benchmark result line.
type result struct {
	pkg   string // the "pkg:" line above it, module path included
	name  string // BenchmarkX/sub, without the -GOMAXPROCS suffix
	iters int64
	units []string           // in the order printed
	vals  map[string]float64 // unit -> value
}

func readDir(dir string) ([]*run, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no results (*.txt) in %s", dir)
	}
	var runs []*run
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		r, err := parse(fh, strings.TrimSuffix(filepath.Base(f), ".txt"))
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		runs = append(runs, r)
	}
	sortRuns(runs)
	return runs, nil
}

// sortRuns puts known sections in report order, others after them by name.
func sortRuns(runs []*run) {
	rank := func(name string) int {
		for i, s := range sections {
			if s.name == name {
				return i
			}
		}
		return len(sections)
	}
	sort.SliceStable(runs, func(i, j int) bool {
		ri, rj := rank(runs[i].section), rank(runs[j].section)
		if ri != rj {
			return ri < rj
		}
		return runs[i].section < runs[j].section
	})
}

// parse reads one file of `go test -bench` output with bench/run.sh's
// "# key: value" lines. Lines that are neither (PASS, ok, logs) are
// skipped, as benchstat skips them.
func parse(rd io.Reader, section string) (*run, error) {
	r := &run{section: section, meta: map[string][]string{}}
	pkg := ""
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# "):
			if k, v, ok := strings.Cut(line[2:], ":"); ok && !strings.ContainsAny(k, " \t") {
				r.meta[k] = append(r.meta[k], strings.TrimSpace(v))
			}
		case strings.HasPrefix(line, "cpu: "):
			r.goCPU = strings.TrimSpace(strings.TrimPrefix(line, "cpu: "))
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "pkg: "))
		case strings.HasPrefix(line, "--- FAIL: "):
			r.failures = append(r.failures, strings.TrimPrefix(line, "--- FAIL: "))
		case strings.HasPrefix(line, "Benchmark"):
			res, ok, err := parseLine(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if ok {
				res.pkg = pkg
				r.results = append(r.results, res)
			}
		}
	}
	if s := r.get("section"); s != "" {
		r.section = s
	}
	return r, sc.Err()
}

// parseLine reads "BenchmarkName-2  N  v unit  v unit ...". A line with the
// name alone (go test -v prints one before each result) is not a result.
func parseLine(line string) (result, bool, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return result{}, false, nil
	}
	iters, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return result{}, false, nil // a log line that starts with "Benchmark"
	}
	if len(f)%2 != 0 {
		return result{}, false, fmt.Errorf("odd number of value/unit fields in %q", line)
	}
	res := result{name: stripProcs(f[0]), iters: iters, vals: map[string]float64{}}
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return result{}, false, fmt.Errorf("value %q in %q: %w", f[i], line, err)
		}
		if _, dup := res.vals[f[i+1]]; !dup {
			res.units = append(res.units, f[i+1])
		}
		res.vals[f[i+1]] = v
	}
	return res, true, nil
}

// stripProcs drops the -GOMAXPROCS suffix go test adds to a name.
func stripProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// bench is every run of one benchmark (one package, one name).
type bench struct {
	pkg, name string
	units     []string
	vals      map[string][]float64
}

// n is the number of runs with a value in unit u.
func (b *bench) n(u string) int { return len(b.vals[u]) }

func (b *bench) med(u string) float64 { return median(b.vals[u]) }

// benches groups a run's results by package and name, in the order first
// printed.
func benches(r *run) []*bench {
	var out []*bench
	idx := map[string]*bench{}
	for _, res := range r.results {
		k := res.pkg + "\x00" + res.name
		b := idx[k]
		if b == nil {
			b = &bench{pkg: res.pkg, name: res.name, vals: map[string][]float64{}}
			idx[k] = b
			out = append(out, b)
		}
		for _, u := range res.units {
			if !slices.Contains(b.units, u) {
				b.units = append(b.units, u)
			}
			b.vals[u] = append(b.vals[u], res.vals[u])
		}
	}
	return out
}

// find returns the benchmark named name (in a package ending in pkg, if
// pkg is set), or nil.
func find(bs []*bench, pkg, name string) *bench {
	for _, b := range bs {
		if b.name == name && (pkg == "" || b.pkg == pkg || strings.HasSuffix(b.pkg, "/"+pkg)) {
			return b
		}
	}
	return nil
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

// num prints x with thousands separators and sig significant digits (at
// least the integer part).
func num(x float64, sig int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	prec := 0
	if ax := math.Abs(x); ax > 0 {
		prec = max(0, sig-1-int(math.Floor(math.Log10(ax))))
	}
	// Half away from zero, as math.Round (FormatFloat rounds half to even).
	p := math.Pow10(prec)
	s := strconv.FormatFloat(math.Round(x*p)/p, 'f', prec, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	ip, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range ip {
		if i > 0 && (len(ip)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return b.String()
}

// timeScale picks the unit to show a duration of ns nanoseconds in.
func timeScale(ns float64) (float64, string) {
	switch a := math.Abs(ns); {
	case a >= 1e9:
		return 1e9, "s"
	case a >= 1e6:
		return 1e6, "ms"
	case a >= 1e3:
		return 1e3, "µs"
	}
	return 1, "ns"
}

// isTime says whether a unit is nanoseconds per something.
func isTime(unit string) bool { return strings.HasPrefix(unit, "ns/") }

// cell is "median (min–max)" of xs in unit, time units scaled to a
// readable one (from the median), counts to whole numbers.
func cell(unit string, xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	m := median(xs)
	lo, hi := slices.Min(xs), slices.Max(xs)
	f := func(x float64) string { return num(x, 3) }
	suffix := ""
	if isTime(unit) {
		div, name := timeScale(m)
		f = func(x float64) string { return num(x/div, 3) }
		suffix = " " + name
	} else if unit == "B/op" || unit == "allocs/op" || integral(xs) {
		f = func(x float64) string { return num(math.Round(x), 1) }
	}
	if lo == hi {
		return f(m) + suffix
	}
	return fmt.Sprintf("%s%s (%s–%s)", f(m), suffix, f(lo), f(hi))
}

// integral says whether every x is a whole number (a count).
func integral(xs []float64) bool {
	for _, x := range xs {
		if x != math.Trunc(x) {
			return false
		}
	}
	return true
}

// dur prints a duration of ns nanoseconds.
func dur(ns float64) string {
	if math.IsNaN(ns) {
		return "–"
	}
	div, name := timeScale(ns)
	return num(ns/div, 3) + " " + name
}

// shortPkg drops the module path.
func shortPkg(p string) string {
	return strings.TrimPrefix(p, "github.com/chatd/chat/")
}

// section is what the report knows about a section of bench/run.sh.
type section struct {
	name, title, about string
	// table is false where derived shows the figures better than the
	// table of every benchmark and unit.
	table bool
	// derived writes the figures the docs cite, under the table; summary
	// returns the one line for the summary at the top ("" for none).
	derived func(w func(string, ...any), r *run, bs []*bench)
	summary func(r *run, bs []*bench) string
}

const seedDoc = "Seeding is described at `storetest.SeedContent` (store/storetest/bench.go): a tenth of the messages are in a direct room the searcher (in no room but general) may not read; at 1,000,000 messages \"common\" is in every message, \"word42\" in 1,000, \"word42 term32598\" in 20, \"needle\" in 99, \"absent\" in none. Each query is the first page (50, newest first), and `/page2` the page after it; warm cache. Cost grows with the matches the searcher may not read: both stores walk the matches newest first and drop those of rooms the user is not in. More in [store/BENCH_SEARCH.md](../store/BENCH_SEARCH.md)."

var sections = []section{
	{
		name:  "fanout",
		title: "Hub fan-out (BenchmarkFanout)",
		about: "The hub's cost of one message to 1, 100, 1,000 and 10,000 live sockets, encoding included; the sockets only count what they are given, so this is the pass over the sockets, each socket's given-id check and lock (server/fanout_bench_test.go). ns/delivery is ns/op ÷ sockets.",
		table: true,
		derived: func(w func(string, ...any), r *run, bs []*bench) {
			one := find(bs, "", "BenchmarkFanout/1")
			if one == nil {
				return
			}
			var parts []string
			for _, n := range []int{100, 1000, 10000} {
				if b := find(bs, "", fmt.Sprintf("BenchmarkFanout/%d", n)); b != nil {
					parts = append(parts, fmt.Sprintf("%s sockets %s", num(float64(n), 1), dur((b.med("ns/op")-one.med("ns/op"))/float64(n-1))))
				}
			}
			if len(parts) > 0 {
				w("Per delivery past the first socket ((median ns/op − median ns/op at 1 socket) ÷ (sockets − 1)): %s.\n\n", strings.Join(parts, ", "))
			}
		},
		summary: func(r *run, bs []*bench) string {
			b := find(bs, "", "BenchmarkFanout/10000")
			if b == nil {
				return ""
			}
			return fmt.Sprintf("hub fan-out to 10,000 sockets: %s per delivery, %s allocations per message", dur(b.med("ns/delivery")), num(b.med("allocs/op"), 1))
		},
	},
	{
		name:  "room",
		title: "A room of 10 against general (BenchmarkRoomFanout)",
		about: "One message to a room of 10 members on a server holding 5,000 sockets, against one to general on the same server (server/room_fanout_test.go): the room check at delivery. deliveries/op is what the sockets were given per message.",
		table: true,
		derived: func(w func(string, ...any), r *run, bs []*bench) {
			room, gen := find(bs, "", "BenchmarkRoomFanout/room-of-10"), find(bs, "", "BenchmarkRoomFanout/general")
			if room == nil || gen == nil {
				return
			}
			w("| message to | deliveries per message | time per message | time per delivery |\n|---|---:|---:|---:|\n")
			for _, b := range []*bench{room, gen} {
				d := b.med("deliveries/op")
				w("| %s | %s | %s | %s |\n", strings.TrimPrefix(b.name, "BenchmarkRoomFanout/"), num(d, 1), dur(b.med("ns/op")), dur(b.med("ns/op")/d))
			}
			w("\nA room's message costs %s of general's on the same server (median ns/op, room ÷ general).\n\n", pct(room.med("ns/op")/gen.med("ns/op")))
		},
		summary: func(r *run, bs []*bench) string {
			room, gen := find(bs, "", "BenchmarkRoomFanout/room-of-10"), find(bs, "", "BenchmarkRoomFanout/general")
			if room == nil || gen == nil {
				return ""
			}
			return fmt.Sprintf("a message to a room of 10 on a server of 5,000 sockets: %s (%s deliveries), general %s (%s deliveries, %s each)",
				dur(room.med("ns/op")), num(room.med("deliveries/op"), 1), dur(gen.med("ns/op")), num(gen.med("deliveries/op"), 1), dur(gen.med("ns/op")/gen.med("deliveries/op")))
		},
	},
	{
		name:  "send",
		title: "The engine's write of a prepared frame (BenchmarkSendPrepared)",
		about: "One prepared frame to 1, 100, 1,000 and 10,000 WebSocket sessions on loopback, the clients draining their sockets (server/socketio/engineio/bench_test.go): the `write(2)` per delivery. 10,000 sessions need 20,200 open files and are skipped below that limit (the `nofile` line under Runs kept).",
		table: true,
		summary: func(r *run, bs []*bench) string {
			var parts []string
			for _, b := range bs {
				parts = append(parts, fmt.Sprintf("%s at %s", dur(b.med("ns/delivery")), num(atof(strings.TrimPrefix(b.name, "BenchmarkSendPrepared/")), 1)))
			}
			if len(parts) == 0 {
				return ""
			}
			return "the engine's WebSocket write of a prepared frame, per delivery: " + strings.Join(parts, ", ") + " sessions"
		},
	},
	{
		name:  "codec",
		title: "Socket.IO packets (server/socketio)",
		about: "Decoding a client's `send message` event, encoding a `new message`, and preparing a broadcast frame once for every receiver (server/socketio/bench_test.go).",
		table: true,
	},
	{
		name:  "limit",
		title: "Rate limiter (server/limit)",
		about: "One `Allow` on a remembered key, on a new key each time with the limiter full (a flood, evicting on every call), and on remembered keys from every core; the heap held per remembered key (server/limit/limiter_test.go).",
		table: true,
		derived: func(w func(string, ...any), r *run, bs []*bench) {
			if b := find(bs, "", "BenchmarkLimiterMemory"); b != nil {
				w("So 100,000 remembered keys hold about %s MB (median heap-B/key × 100,000).", num(b.med("heap-B/key")*100000/1e6, 2))
			}
			if b := find(bs, "", "BenchmarkAllow/new-key-evicting"); b != nil {
				w(" A flood of new addresses costs %s per call: about %s million calls per second per core before other work.", dur(b.med("ns/op")), num(1e3/b.med("ns/op"), 2))
			}
			w("\n\n")
		},
		summary: func(r *run, bs []*bench) string {
			k, e, m := find(bs, "", "BenchmarkAllow/known-key"), find(bs, "", "BenchmarkAllow/new-key-evicting"), find(bs, "", "BenchmarkLimiterMemory")
			if k == nil || e == nil || m == nil {
				return ""
			}
			return fmt.Sprintf("rate limiter: %s per call on a known key, %s on a new one (evicting), %s bytes of heap per key", dur(k.med("ns/op")), dur(e.med("ns/op")), num(m.med("heap-B/key"), 3))
		},
	},
	{
		name:  "bcrypt",
		title: "Password hashing (bcrypt cost 10)",
		about: "One registration's hash at the seed's cost 10 on one core, and on every core at once (server/bench_test.go): the ceiling of registrations per second.",
		table: true,
		derived: func(w func(string, ...any), r *run, bs []*bench) {
			if b := find(bs, "", "BenchmarkBcryptHashParallel"); b != nil {
				ns := b.med("ns/op")
				w("On all %s cores: %s hashes per second, so the report's 450 registrations need at least %s of hashing.\n\n", orDash(r.get("nproc")), num(1e9/ns, 3), dur(450*ns))
			}
		},
		summary: func(r *run, bs []*bench) string {
			one, par := find(bs, "", "BenchmarkBcryptHash"), find(bs, "", "BenchmarkBcryptHashParallel")
			if one == nil || par == nil {
				return ""
			}
			return fmt.Sprintf("bcrypt cost 10: %s per hash on one core; %s hashes per second on all %s cores (450 registrations ≥ %s)", dur(one.med("ns/op")), num(1e9/par.med("ns/op"), 3), orDash(r.get("nproc")), dur(450*par.med("ns/op")))
		},
	},
	{
		name:  "bus",
		title: "Bus between servers (PostgreSQL LISTEN/NOTIFY, NATS)",
		about: "BenchmarkPublishDeliver publishes on one server's bus and handles on another's: sequential (one event in flight) and burst (4 publishers, 256 in flight); the lag is publish → handled, per event (bus/bustest). BenchmarkPublish (NATS) is what the confirmation costs a publisher: confirmed (the event, then a PING the server answers) against queued (the bare client publish), alone and with 8 publishers (bus/natsbus/confirm_test.go). PostgreSQL and nats-server run on the same machine.",
		table: false,
		derived: func(w func(string, ...any), r *run, bs []*bench) {
			w("| bus | mode | events per second | lag p50 | lag p99 |\n|---|---|---:|---:|---:|\n")
			for _, pkg := range []struct{ pkg, name string }{{"bus/pgbus", "PostgreSQL NOTIFY"}, {"bus/natsbus", "NATS"}} {
				for _, mode := range []string{"sequential", "burst"} {
					b := find(bs, pkg.pkg, "BenchmarkPublishDeliver/"+mode)
					if b == nil {
						continue
					}
					w("| %s | %s | %s | %s | %s |\n", pkg.name, mode, cell("events/s", b.vals["events/s"]), cellUs(b.vals["p50-lag-us"]), cellUs(b.vals["p99-lag-us"]))
				}
			}
			var pubs []*bench
			for _, b := range bs {
				if strings.HasPrefix(b.name, "BenchmarkPublish/") {
					pubs = append(pubs, b)
				}
			}
			if len(pubs) > 0 {
				w("\n| NATS publish | time per event |\n|---|---:|\n")
				for _, b := range pubs {
					w("| %s | %s |\n", strings.TrimPrefix(b.name, "BenchmarkPublish/"), cell("ns/op", b.vals["ns/op"]))
				}
			}
			w("\n")
		},
		summary: func(r *run, bs []*bench) string {
			var parts []string
			for _, pkg := range []struct{ pkg, name string }{{"bus/pgbus", "PostgreSQL NOTIFY"}, {"bus/natsbus", "NATS"}} {
				s, bu := find(bs, pkg.pkg, "BenchmarkPublishDeliver/sequential"), find(bs, pkg.pkg, "BenchmarkPublishDeliver/burst")
				if s == nil || bu == nil {
					continue
				}
				parts = append(parts, fmt.Sprintf("%s %s events/s in bursts (p99 lag %s), p50 lag %s one at a time", pkg.name, num(bu.med("events/s"), 3), dur(1e3*bu.med("p99-lag-us")), dur(1e3*s.med("p50-lag-us"))))
			}
			if len(parts) == 0 {
				return ""
			}
			return "bus: " + strings.Join(parts, "; ")
		},
	},
	{
		name:    "search",
		title:   "Search latency (issue 11)",
		about:   "`SearchMessages` over the seeded messages, PostgreSQL (GIN on `to_tsvector('simple', content)`) and SQLite (FTS5, external content). " + seedDoc,
		table:   false,
		derived: searchTable,
		summary: func(r *run, bs []*bench) string {
			var parts []string
			for _, st := range searchStores {
				var worst *bench
				for _, b := range bs {
					if strings.HasSuffix(b.pkg, "/"+st.pkg) && (worst == nil || b.med("ns/op") > worst.med("ns/op")) {
						worst = b
					}
				}
				if worst != nil {
					parts = append(parts, fmt.Sprintf("%s %s (%s)", st.short, dur(worst.med("ns/op")), queryName(strings.TrimPrefix(worst.name, "BenchmarkSearch/"))))
				}
			}
			if len(parts) == 0 {
				return ""
			}
			return fmt.Sprintf("search over %s messages, slowest query: %s", num(atof(r.get("search-messages")), 1), strings.Join(parts, ", "))
		},
	},
}

var searchStores = []struct{ pkg, short, title string }{
	{"store/postgres", "PostgreSQL", "PostgreSQL (GIN)"},
	{"store/sqlite", "SQLite", "SQLite (FTS5)"},
}

func searchTable(w func(string, ...any), r *run, bs []*bench) {
	var queries []string
	for _, b := range bs {
		q := strings.TrimPrefix(b.name, "BenchmarkSearch/")
		if !slices.Contains(queries, q) {
			queries = append(queries, q)
		}
	}
	w("%s messages per store (`CHAT_BENCH_MESSAGES`). Time per query, median of the runs (lowest–highest):\n\n", num(atof(r.get("search-messages")), 1))
	w("| query | results on the first page |")
	for _, st := range searchStores {
		w(" %s |", st.title)
	}
	w("\n|---|---:|")
	for range searchStores {
		w("---:|")
	}
	w("\n")
	for _, q := range queries {
		res := "–"
		var cells []string
		for _, st := range searchStores {
			b := find(bs, st.pkg, "BenchmarkSearch/"+q)
			if b == nil {
				cells = append(cells, "–")
				continue
			}
			cells = append(cells, cellMs(b.vals["ns/op"]))
			if b.n("results") > 0 && res == "–" {
				res = num(b.med("results"), 1)
			}
		}
		if strings.HasSuffix(q, "/page2") {
			res = ""
		}
		w("| %s | %s | %s |\n", queryName(q), res, strings.Join(cells, " | "))
	}
	w("\nA query whose first page is not full has no page 2 (skipped).\n\n")
}

// queryName is a search sub-benchmark's query as typed: go test writes
// spaces as underscores.
func queryName(sub string) string {
	return strings.ReplaceAll(strings.ReplaceAll(sub, "/page2", ", page 2"), "_", " ")
}

// cellMs is cell for nanoseconds, always in milliseconds.
func cellMs(xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	f := func(x float64) string { return num(x/1e6, 3) }
	m, lo, hi := median(xs), slices.Min(xs), slices.Max(xs)
	if lo == hi {
		return f(m) + " ms"
	}
	return fmt.Sprintf("%s ms (%s–%s)", f(m), f(lo), f(hi))
}

// cellUs is cell for microseconds, shown in a readable unit.
func cellUs(xs []float64) string {
	ns := make([]float64, len(xs))
	for i, x := range xs {
		ns[i] = x * 1e3
	}
	return cell("ns/op", ns)
}

func pct(f float64) string {
	if math.IsNaN(f) {
		return "–"
	}
	return num(100*f, 2) + " %"
}

func atof(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return f
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func sectionOf(name string) section {
	for _, s := range sections {
		if s.name == name {
			return s
		}
	}
	return section{name: name, title: name, table: true}
}

// Command is the line the report says it was generated by.
const Command = "go run ./bench/cmd/benchreport -in bench/results -out bench/RESULTS.md"

func render(runs []*run) string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	w("# Go benchmarks\n\n")
	w("Generated by `%s` from the raw `go test -bench` output that `bench/run.sh` keeps in [results/](results/), one file per section. Do not edit: run `bench/run.sh` (or, to redraw from the kept files, the command above) again. ", Command)
	w("`BENCH=<regexp> bench/run.sh` runs only the sections whose names match and replaces only their files; each section says when it ran. ")
	w("The raw files are as `go test` printed them, so `benchstat` reads them (for example `benchstat old.txt bench/results/fanout.txt`); the lines starting with `#` are the run's description.\n\n")
	w("Every figure is the **median of the runs** (`-count`), with the lowest and highest in brackets. The machine is shared with other work: the load average at the start and end of each section is under Runs kept, and only differences larger than the spread between runs mean much.\n\n")

	w("## Summary\n\n")
	for _, r := range runs {
		s := sectionOf(r.section)
		if s.summary == nil {
			continue
		}
		if line := s.summary(r, benches(r)); line != "" {
			w("- %s ([%s](#%s))\n", line, r.section, anchor(s.title))
		}
	}

	w("\n## Runs kept\n\n| section | date | commit | runs | load average start → end | time | go |\n|---|---|---|---:|---|---:|---|\n")
	for _, r := range runs {
		w("| [%s](results/%s.txt) | %s | %s | %s | %s → %s | %s | %s |\n", r.section, r.section, orDash(r.get("date")), orDash(r.get("commit")), orDash(r.get("count")),
			orDash(r.get("loadavg-start")), orDash(r.get("loadavg-end")), orDash(r.get("seconds"))+" s", orDash(r.get("go")))
	}

	// Each line from the latest section that says it: postgres from
	// search or bus, nats-server from bus.
	byDate := slices.Clone(runs)
	sort.SliceStable(byDate, func(i, j int) bool { return byDate[i].get("date") > byDate[j].get("date") })
	w("\n## Machine\n\nAs the latest section that names it says (the raw files say it for each).\n\n| | |\n|---|---|\n")
	for _, k := range []string{"cpu", "nproc", "ram", "kernel", "go", "postgres", "nats-server", "nofile"} {
		for _, r := range byDate {
			v := r.get(k)
			if k == "cpu" && r.goCPU != "" && r.goCPU != v {
				v = fmt.Sprintf("%s (go test: %s)", orDash(v), r.goCPU)
			}
			if v != "" {
				w("| %s | %s |\n", k, v)
				break
			}
		}
	}
	w("\n")

	for _, r := range runs {
		s := sectionOf(r.section)
		bs := benches(r)
		w("## %s\n\n", s.title)
		if s.about != "" {
			w("%s\n\n", s.about)
		}
		w("Section `%s`, run %s at commit %s, load average %s → %s:\n\n", r.section, orDash(r.get("date")), orDash(r.get("commit")), orDash(r.get("loadavg-start")), orDash(r.get("loadavg-end")))
		for _, c := range r.meta["command"] {
			w("    %s\n", c)
		}
		w("\n")
		if len(r.failures) > 0 {
			w("**Failed:** %s\n\n", strings.Join(r.failures, "; "))
		}
		if len(bs) == 0 {
			w("No result.\n\n")
			continue
		}
		if s.table {
			table(w, bs)
		}
		if s.derived != nil {
			s.derived(w, r, bs)
		}
	}
	return b.String()
}

// table writes every benchmark of a section with every unit it reported.
func table(w func(string, ...any), bs []*bench) {
	var units []string
	pkgs := map[string]bool{}
	for _, b := range bs {
		pkgs[b.pkg] = true
		for _, u := range b.units {
			if !slices.Contains(units, u) {
				units = append(units, u)
			}
		}
	}
	multi := len(pkgs) > 1
	if multi {
		w("| package ")
	}
	w("| benchmark | runs |")
	for _, u := range units {
		w(" %s |", u)
	}
	w("\n")
	if multi {
		w("|---")
	}
	w("|---|---:|")
	for range units {
		w("---:|")
	}
	w("\n")
	for _, b := range bs {
		if multi {
			w("| %s ", shortPkg(b.pkg))
		}
		w("| %s | %d |", b.name, b.n(b.units[0]))
		for _, u := range units {
			w(" %s |", cell(u, b.vals[u]))
		}
		w("\n")
	}
	w("\n")
}

// anchor is GitHub's anchor for a heading.
func anchor(title string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(title) {
		switch {
		case c == ' ' || c == '-':
			b.WriteRune('-')
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c > 127:
			b.WriteRune(c)
		}
	}
	return b.String()
}
