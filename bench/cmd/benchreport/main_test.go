package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Raw files as bench/run.sh writes them: its "# key: value" lines around
// go test's own output, noise included (go test -v's name-only lines,
// PASS, ok).
const roomRaw = `# Raw go test -bench output of bench/run.sh section room; bench/RESULTS.md is generated from it.
# section: room
# date: 2026-12-05 10:00 UTC
# commit: abc1234
# count: 3
# go: go1.26.8 linux/amd64
# cpu: AMD EPYC
# nproc: 2
# loadavg-start: 1.00 2.00 3.00 (1, 5, 15 min; 2 cores)
# command: go test -p 1 -run '^$' -count 3 -bench '^BenchmarkRoomFanout$' -benchmem -benchtime 2000x ./server/
goos: linux
goarch: amd64
pkg: github.com/chatd/chat/server
cpu: Oxide Virtual Turin-like Processor
BenchmarkRoomFanout/room-of-10
BenchmarkRoomFanout/room-of-10-2 	    2000	     10000 ns/op	        10.00 deliveries/op	    1133 B/op	      16 allocs/op
BenchmarkRoomFanout/room-of-10-2 	    2000	     12000 ns/op	        10.00 deliveries/op	    1133 B/op	      16 allocs/op
BenchmarkRoomFanout/room-of-10-2 	    2000	     11000 ns/op	        10.00 deliveries/op	    1133 B/op	      16 allocs/op
BenchmarkRoomFanout/general-2    	    2000	    250000 ns/op	      5000 deliveries/op	   41969 B/op	      16 allocs/op
BenchmarkRoomFanout/general-2    	    2000	    300000 ns/op	      5000 deliveries/op	   41969 B/op	      16 allocs/op
BenchmarkRoomFanout/general-2    	    2000	    200000 ns/op	      5000 deliveries/op	   41969 B/op	      16 allocs/op
PASS
ok  	github.com/chatd/chat/server	9.100s
# loadavg-end: 1.50 2.10 3.00
# seconds: 12
`

const searchRaw = `# section: search
# date: 2026-12-05 10:05 UTC
# commit: abc1234 + uncommitted changes
# count: 2
# postgres: 15.20
# search-messages: 1000000
# loadavg-start: 2.00 2.00 2.00 (1, 5, 15 min; 2 cores)
# command: CHAT_BENCH_MESSAGES=1000000 go test -p 1 -run '^$' -count 2 -bench '^BenchmarkSearch$' -benchtime 20x ./store/postgres/ ./store/sqlite/
pkg: github.com/chatd/chat/store/postgres
cpu: Oxide Virtual Turin-like Processor
BenchmarkSearch/common-2         	      20	   1000000 ns/op	        50.00 results
BenchmarkSearch/common-2         	      20	   1400000 ns/op	        50.00 results
BenchmarkSearch/common/page2-2   	      20	   1200000 ns/op
BenchmarkSearch/common/page2-2   	      20	   1300000 ns/op
BenchmarkSearch/word42_term32598-2	      20	    700000 ns/op	        20.00 results
BenchmarkSearch/word42_term32598-2	      20	    690000 ns/op	        20.00 results
ok  	github.com/chatd/chat/store/postgres	30.1s
pkg: github.com/chatd/chat/store/sqlite
BenchmarkSearch/common-2         	      20	    800000 ns/op	        50.00 results
BenchmarkSearch/common-2         	      20	    840000 ns/op	        50.00 results
BenchmarkSearch/common/page2-2   	      20	    740000 ns/op
BenchmarkSearch/common/page2-2   	      20	    740000 ns/op
BenchmarkSearch/word42_term32598-2	      20	   1170000 ns/op	        20.00 results
BenchmarkSearch/word42_term32598-2	      20	   1170000 ns/op	        20.00 results
ok  	github.com/chatd/chat/store/sqlite	12.0s
# loadavg-end: 2.50 2.00 2.00
`

func writeRaw(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParse(t *testing.T) {
	r, err := parse(strings.NewReader(roomRaw), "ignored")
	if err != nil {
		t.Fatal(err)
	}
	if r.section != "room" || r.get("commit") != "abc1234" || r.get("loadavg-end") != "1.50 2.10 3.00" {
		t.Errorf("section %q, meta %v", r.section, r.meta)
	}
	if len(r.results) != 6 {
		t.Fatalf("%d results, want 6 (the name-only line is not one)", len(r.results))
	}
	first := r.results[0]
	if first.pkg != "github.com/chatd/chat/server" || first.name != "BenchmarkRoomFanout/room-of-10" || first.iters != 2000 ||
		first.vals["ns/op"] != 10000 || first.vals["deliveries/op"] != 10 || first.vals["allocs/op"] != 16 {
		t.Errorf("first result = %+v", first)
	}
	if got := strings.Join(first.units, " "); got != "ns/op deliveries/op B/op allocs/op" {
		t.Errorf("units in order = %q", got)
	}
	bs := benches(r)
	if len(bs) != 2 || bs[1].med("ns/op") != 250000 || bs[0].med("ns/op") != 11000 {
		t.Errorf("benches: %d, medians %v %v", len(bs), bs[0].vals, bs[1].vals)
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line   string
		ok     bool
		err    bool
		name   string
		nsop   float64
		nunits int
	}{
		{"BenchmarkFanout/1000-2 \t 20000 \t 60000 ns/op \t 60.00 ns/delivery", true, false, "BenchmarkFanout/1000", 60000, 2},
		{"BenchmarkLimiterMemory 12 94006386 ns/op 163.0 heap-B/key", true, false, "BenchmarkLimiterMemory", 94006386, 2},
		{"BenchmarkAllow/new-key-evicting-2 2196271 665.8 ns/op", true, false, "BenchmarkAllow/new-key-evicting", 665.8, 1},
		{"BenchmarkSendPrepared/10000", false, false, "", 0, 0},
		{"Benchmarks below are slow", false, false, "", 0, 0},
		{"BenchmarkX-2 10 5 ns/op 7", false, true, "", 0, 0},
		{"BenchmarkX-2 10 five ns/op", false, true, "", 0, 0},
	} {
		res, ok, err := parseLine(tc.line)
		if ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%q: ok %v err %v", tc.line, ok, err)
			continue
		}
		if ok && (res.name != tc.name || res.vals["ns/op"] != tc.nsop || len(res.units) != tc.nunits) {
			t.Errorf("%q: %+v", tc.line, res)
		}
	}
}

func TestCell(t *testing.T) {
	for _, tc := range []struct {
		unit string
		xs   []float64
		want string
	}{
		{"ns/op", []float64{10000, 12000, 11000}, "11.0 µs (10.0–12.0)"},
		{"ns/op", []float64{250000, 300000, 200000, 260000}, "255 µs (200–300)"},
		{"ns/op", []float64{1.2e6}, "1.20 ms"},
		{"ns/op", []float64{57.5, 61.2}, "59.4 ns (57.5–61.2)"},
		{"B/op", []float64{41969, 41966}, "41,968 (41,966–41,969)"},
		{"allocs/op", []float64{16, 16}, "16"},
		{"deliveries/op", []float64{10, 10}, "10"},
		{"events/s", []float64{2269.4, 5499.1, 3000}, "3,000 (2,269–5,499)"},
		{"events/s", []float64{10077, 10144, 10145, 21592}, "10,145 (10,077–21,592)"},
		{"heap-B/key", nil, "–"},
	} {
		if got := cell(tc.unit, tc.xs); got != tc.want {
			t.Errorf("cell(%s, %v) = %q, want %q", tc.unit, tc.xs, got, tc.want)
		}
	}
}

func TestRender(t *testing.T) {
	runs, err := readDir(writeRaw(t, map[string]string{"search.txt": searchRaw, "room.txt": roomRaw, "README": "not a result"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].section != "room" || runs[1].section != "search" {
		t.Fatalf("runs not in report order: %v", runs)
	}
	md := render(runs)
	for _, want := range []string{
		"Generated by `" + Command + "`",
		"Do not edit",
		// Runs kept: one row per section, with its load and commit.
		"| [room](results/room.txt) | 2026-12-05 10:00 UTC | abc1234 | 3 | 1.00 2.00 3.00 (1, 5, 15 min; 2 cores) → 1.50 2.10 3.00 | 12 s | go1.26.8 linux/amd64 |",
		"| [search](results/search.txt) | 2026-12-05 10:05 UTC | abc1234 + uncommitted changes | 2 |",
		// Machine: each line from the latest section that has it.
		"| postgres | 15.20 |",
		"| cpu | – (go test: Oxide Virtual Turin-like Processor) |",
		"| go | go1.26.8 linux/amd64 |",
		// The room: every unit, then the derived table.
		"| BenchmarkRoomFanout/room-of-10 | 3 | 11.0 µs (10.0–12.0) | 10 | 1,133 | 16 |",
		"| BenchmarkRoomFanout/general | 3 | 250 µs (200–300) | 5,000 | 41,969 | 16 |",
		"| room-of-10 | 10 | 11.0 µs | 1.10 µs |",
		"| general | 5,000 | 250 µs | 50.0 ns |",
		"A room's message costs 4.4 % of general's",
		"    go test -p 1 -run '^$' -count 3 -bench '^BenchmarkRoomFanout$' -benchmem -benchtime 2000x ./server/",
		// Search: one row per query, one column per store, in ms.
		"1,000,000 messages per store",
		"| common | 50 | 1.20 ms (1.00–1.40) | 0.820 ms (0.800–0.840) |",
		"| common, page 2 |  | 1.25 ms (1.20–1.30) | 0.740 ms |",
		"| word42 term32598 | 20 | 0.695 ms (0.690–0.700) | 1.17 ms |",
		// Summary lines.
		"- a message to a room of 10 on a server of 5,000 sockets: 11.0 µs (10 deliveries), general 250 µs (5,000 deliveries, 50.0 ns each) ([room](#a-room-of-10-against-general-benchmarkroomfanout))",
		"- search over 1,000,000 messages, slowest query: PostgreSQL 1.25 ms (common, page 2), SQLite 1.17 ms (word42 term32598) ([search](#search-latency-issue-11))",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
	// The headings the summary links to exist.
	for _, a := range []string{"## A room of 10 against general (BenchmarkRoomFanout)", "## Search latency (issue 11)"} {
		if !strings.Contains(md, "\n"+a+"\n") {
			t.Errorf("no heading %q", a)
		}
	}
}

func TestReadDirEmpty(t *testing.T) {
	if _, err := readDir(t.TempDir()); err == nil {
		t.Error("no error for a folder without results")
	}
}

// TestKeptResults renders the results kept in the repository, and checks
// that bench/RESULTS.md is what they give: a hand edit of the report, or a
// change to the generator not followed by the command, fails here.
func TestKeptResults(t *testing.T) {
	runs, err := readDir("../../results")
	if err != nil {
		t.Skipf("no kept results: %v", err)
	}
	md := render(runs)
	for _, r := range runs {
		if len(r.results) == 0 {
			t.Errorf("results/%s.txt: no benchmark result", r.section)
		}
		if !strings.Contains(md, "](results/"+r.section+".txt)") {
			t.Errorf("section %s not listed", r.section)
		}
	}
	kept, err := os.ReadFile("../../RESULTS.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(kept) != md {
		t.Errorf("bench/RESULTS.md is not what bench/results/ gives: run %s", Command)
	}
}
