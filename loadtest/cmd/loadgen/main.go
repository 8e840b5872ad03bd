// Command loadgen drives a Socket.IO chat server (this project's Go server
// or the Node reference in loadtest/reference) with many clients and
// measures connect time, fan-out latency, exact delivery counts, and the
// server's CPU and memory from /proc. See loadtest/README.md.
//
//	loadgen -url http://127.0.0.1:3500 -clients 1000 -senders 10 -rate 20 -duration 20s -server-pid 1234
//	loadgen -url http://127.0.0.1:3500 -idle -clients 10000 -hold 15s -server-pid 1234
//	loadgen -url http://127.0.0.1:3500,http://127.0.0.1:3501 -server-pid 1234,1235 -bus-lag
//
// A progress line goes to stderr every second; at the end a table goes to
// stderr and one JSON line to stdout (and to -json, if given). The exit
// status is 0 when the run met every expectation (all connected, every
// delivery exact), 1 when it measured problems, 2 on bad usage.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/chatd/chat/loadtest/loadgen"
)

func main() {
	os.Exit(run())
}

func run() int {
	var c loadgen.Config
	var jsonPath string
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:3000", "server URL; loopback only (127.0.0.0/8, ::1, localhost); several servers: comma-separated, clients spread round-robin")
	fs.IntVar(&c.Clients, "clients", 100, "connections in all, senders included")
	fs.IntVar(&c.Senders, "senders", 10, "clients that register, log in and send (before the others connect)")
	fs.Float64Var(&c.Rate, "rate", 10, "messages per second, all senders together")
	fs.IntVar(&c.Messages, "messages", 0, "messages in all; 0 means -rate × -duration")
	fs.DurationVar(&c.Duration, "duration", 0, "cap on the sending phase (default 30s)")
	fs.DurationVar(&c.Drain, "drain", 0, "cap on the wait for deliveries after the last send (default 30s)")
	fs.Float64Var(&c.Ramp, "ramp", 0, "connections started per second (default 1000)")
	fs.IntVar(&c.ConnectConcurrency, "connect-concurrency", 0, "handshakes in flight at most (default 200)")
	fs.DurationVar(&c.Settle, "settle", 0, "pause after connecting, before messages; its server CPU is the idle cost (default 2s)")
	fs.StringVar(&c.Transport, "transport", "websocket", "how every client (senders included) connects: websocket (directly), polling (HTTP long-polling, never upgrades), upgrade (long-polling, then the Engine.IO upgrade to WebSocket, as the stock socket.io client)")
	fs.Float64Var(&c.Polling, "polling", 0, "share of non-sender clients on HTTP long-polling only, whatever -transport says, 0..1")
	fs.BoolVar(&c.Idle, "idle", false, "connect -clients, hold them -hold, measure memory per connection; no messages")
	fs.DurationVar(&c.Hold, "hold", 0, "idle mode: how long to hold the connections (default 10s)")
	pidList := fs.String("server-pid", "", "server process to read CPU and RSS from /proc; several servers: comma-separated, one per -url in the same order (summed)")
	fs.BoolVar(&c.BusLag, "bus-lag", false, "scrape each server's /metrics before and after the messages phase and report the bus lag (chat_bus_lag_seconds); this project's server only")
	fs.BoolVar(&c.Ack, "ack", true, "ask for an acknowledgement of each send (the Go server's extension; use -ack=false for the Node reference)")
	fs.BoolVar(&c.XFF, "xff", true, "give each client its own X-Forwarded-For address, as nginx would")
	fs.DurationVar(&c.PongDelay, "pong-delay", 0, "answer each Engine.IO ping this late (default: at once)")
	fs.IntVar(&c.Loops, "loops", 0, "epoll loops reading the WebSocket connections (default 1)")
	fs.IntVar(&c.SourceIPs, "source-ips", 1, "spread connections over source addresses 127.0.0.1..127.0.0.N (more ephemeral ports)")
	fs.StringVar(&c.Prefix, "prefix", "", "senders' username prefix (default: lt + a random run id)")
	fs.StringVar(&c.Password, "password", "", "senders' password")
	fs.DurationVar(&c.MaxRun, "max-run", 0, "hard cap on the whole run (default: sum of the phase caps + 2m)")
	fs.StringVar(&c.Label, "label", "", "free text copied into the result")
	fs.StringVar(&c.ServerName, "server-name", "", "name of the server under test, copied into the result (go, node)")
	fs.StringVar(&c.Scenario, "scenario", "", "scenario name, copied into the result")
	fs.StringVar(&jsonPath, "json", "", "also write the JSON result to this file")
	quiet := fs.Bool("quiet", false, "no progress lines")
	cpuprofile := fs.String("cpuprofile", "", "write the load generator's own CPU profile to this file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	pids, err := loadgen.ParsePIDs(*pidList)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 2
	}
	if len(pids) == 1 {
		c.ServerPID = pids[0]
	} else {
		c.ServerPIDs = pids
	}
	if !*quiet {
		c.Progress = os.Stderr
	}
	// Fewer collections: the generator's own CPU is part of what it
	// must keep small, and memory is plentiful next to the server's.
	debug.SetGCPercent(400)

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := loadgen.Run(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 2
	}
	res.WriteTable(os.Stderr)
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 2
	}
	b = append(b, '\n')
	os.Stdout.Write(b)
	if jsonPath != "" {
		if err := os.WriteFile(jsonPath, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			return 2
		}
	}
	if !res.OK {
		return 1
	}
	return 0
}
