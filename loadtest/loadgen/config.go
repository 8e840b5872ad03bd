// Package loadgen is a load generator for Socket.IO chat servers that speak
// the seed report's protocol (docs/protocol.md): this project's Go server
// and the Node reference in loadtest/reference.
//
// It is built to cost much less CPU per delivered message than the server
// it measures: raw WebSocket frames of Engine.IO v4 / Socket.IO v5 (no
// Socket.IO library), one goroutine per connection reading into a reused
// buffer, and no JSON decoding of `new message`: each message text carries
// a marker `lt:<run>:<seq>:<sendUnixNano>` found with bytes.Index, and its
// sequence number indexes per-message counters. Clients can also start on
// HTTP long-polling, and stay there or upgrade as browsers do (transport.go).
//
// It only ever connects to loopback addresses.
package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config describes one run. The zero value of most fields means a default;
// see Defaults.
type Config struct {
	// URL of the server, http://127.0.0.1:<port>. Loopback only. Several
	// servers of one cluster: comma-separated URLs; clients (senders
	// included) are spread over them round-robin by client number.
	URL string
	// Clients is the number of connections, senders included.
	Clients int
	// Senders of the clients register, log in and send messages. They are
	// connected and logged in before the other clients, outside every
	// measurement (bcrypt).
	Senders int
	// Rate is messages per second, all senders together.
	Rate float64
	// Messages is how many messages to send in all; 0 means Rate × Duration.
	Messages int
	// Duration caps the sending phase.
	Duration time.Duration
	// Drain caps the wait for deliveries after the last send.
	Drain time.Duration
	// Ramp is connections started per second.
	Ramp float64
	// ConnectConcurrency bounds handshakes in flight.
	ConnectConcurrency int
	// Settle is a quiet pause after everyone is connected, before messages
	// (or before Hold): its server CPU is reported as the idle cost.
	Settle time.Duration
	// Transport of every client, senders included: TransportWebSocket
	// (the default: a WebSocket from the start), TransportPolling (HTTP
	// long-polling, never upgrades) or TransportUpgrade (long-polling,
	// then the Engine.IO upgrade to WebSocket, as the stock socket.io
	// client does).
	Transport string
	// Polling is the share (0..1) of non-sender clients that use HTTP
	// long-polling only, whatever Transport says.
	Polling float64
	// Idle mode connects Clients, holds them for Hold and measures memory
	// per connection; no senders, no messages.
	Idle bool
	Hold time.Duration
	// ServerPID, when set, is read from /proc for CPU and memory.
	ServerPID int
	// ServerPIDs, when it has more than one entry, replaces ServerPID: one
	// process per URL, in the same order; CPU and RSS are summed over them
	// and also reported per server.
	ServerPIDs []int
	// BusLag scrapes each server's /metrics just before the messages phase
	// and after it, and reports the bus lag (chat_bus_lag_seconds) of the
	// run from the difference. This project's Go server only.
	BusLag bool
	// Ack asks for an acknowledgement of each `send message` (the Go
	// server's extension). The Node reference sends none.
	Ack bool
	// XFF gives each client its own X-Forwarded-For address (10.x.y.z), as
	// nginx in front of the server would: the Go server trusts it from
	// loopback peers and applies its per-address limits to it.
	XFF bool
	// PongDelay delays each pong. 0 (the default) answers at once, as a
	// client on loopback does; see README (the heartbeat race).
	PongDelay time.Duration
	// Loops is the number of epoll loops reading WebSocket connections;
	// default 1: one loop batches more sockets per wakeup and measured
	// 30-40 % cheaper per delivery than two on a 2-core machine.
	Loops int
	// SourceIPs > 1 spreads connections over source addresses 127.0.0.1 ..
	// 127.0.0.N, each with its own ephemeral port range.
	SourceIPs int
	// Prefix of the senders' usernames; default "lt" + the run id.
	Prefix   string
	Password string
	// MaxRun stops the whole run, whatever its state; default: the sum of
	// every phase's cap plus a minute.
	MaxRun time.Duration
	// Labels copied into the result.
	Label, ServerName, Scenario string
	// Progress receives one line per second; nil for none.
	Progress io.Writer
}

// The values of Config.Transport (-transport).
const (
	TransportWebSocket = "websocket"
	TransportPolling   = "polling"
	TransportUpgrade   = "upgrade"
)

// Defaults fills the zero fields.
func (c *Config) Defaults() {
	if c.Transport == "" {
		c.Transport = TransportWebSocket
	}
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 30 * time.Second
	}
	if c.Ramp == 0 {
		c.Ramp = 1000
	}
	if c.ConnectConcurrency == 0 {
		c.ConnectConcurrency = 200
	}
	if c.Settle == 0 {
		c.Settle = 2 * time.Second
	}
	if c.Hold == 0 {
		c.Hold = 10 * time.Second
	}
	if c.Password == "" {
		c.Password = "loadtest-password"
	}
	if c.SourceIPs == 0 {
		c.SourceIPs = 1
	}
	if c.Idle {
		c.Senders = 0
	}
	if c.Messages == 0 && !c.Idle {
		c.Messages = int(c.Rate * c.Duration.Seconds())
	}
	if c.MaxRun == 0 {
		connect := time.Duration(float64(c.Clients)/c.Ramp*float64(time.Second)) + 90*time.Second
		c.MaxRun = connect + c.Settle + c.Duration + c.Drain + c.Hold + 2*time.Minute
	}
}

// Validate checks the configuration after Defaults.
func (c *Config) Validate() error {
	urls, err := ParseURLs(c.URL)
	if err != nil {
		return err
	}
	if len(c.ServerPIDs) > 1 && len(c.ServerPIDs) != len(urls) {
		return fmt.Errorf("-server-pid: %d processes for %d URLs; give one per -url, in the same order", len(c.ServerPIDs), len(urls))
	}
	for _, p := range c.ServerPIDs {
		if p <= 0 {
			return fmt.Errorf("-server-pid: %d is not a process id", p)
		}
	}
	switch {
	case c.Clients < 1:
		return errors.New("-clients must be at least 1")
	case c.Senders < 0 || c.Senders > c.Clients:
		return errors.New("-senders must be between 0 and -clients")
	case !c.Idle && c.Senders == 0:
		return errors.New("-senders must be at least 1 (or use -idle)")
	case !c.Idle && c.Rate <= 0:
		return errors.New("-rate must be above 0")
	case !c.Idle && c.Messages < 1:
		return errors.New("-messages (or -rate × -duration) must be at least 1")
	case c.Transport != TransportWebSocket && c.Transport != TransportPolling && c.Transport != TransportUpgrade:
		return fmt.Errorf("-transport must be websocket, polling or upgrade, not %q", c.Transport)
	case c.Polling < 0 || c.Polling > 1:
		return errors.New("-polling is a share between 0 and 1")
	case c.Ramp <= 0:
		return errors.New("-ramp must be above 0")
	case c.SourceIPs < 1 || c.SourceIPs > 250:
		return errors.New("-source-ips must be between 1 and 250")
	case c.Duration <= 0 || c.Drain <= 0 || c.Hold <= 0 || c.Settle < 0:
		return errors.New("durations must be positive")
	case c.ConnectConcurrency < 1:
		return errors.New("-connect-concurrency must be at least 1")
	}
	if len(c.Prefix) > 40 {
		return errors.New("-prefix: at most 40 characters")
	}
	for _, r := range c.Prefix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("-prefix: %q is not a letter, digit, '_', '-' or '.'", r)
		}
	}
	return nil
}

// CheckLoopback refuses any URL whose host is not a loopback address
// (127.0.0.0/8, ::1) or "localhost": this tool opens thousands of
// connections and must never point them at another machine.
func CheckLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	switch u.Scheme {
	case "http", "ws":
	default:
		return fmt.Errorf("-url: scheme must be http or ws, not %q", u.Scheme)
	}
	if u.Port() == "" {
		return errors.New("-url: give the port explicitly, e.g. http://127.0.0.1:3000")
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url: %q is not a loopback address; only 127.0.0.0/8, ::1 and localhost are allowed", host)
	}
	return nil
}

// maxServers bounds the number of URLs (and server processes) of one run.
const maxServers = 16

// ParseURLs splits a comma-separated -url into its URLs, each checked with
// CheckLoopback. One URL (no comma) is the usual case.
func ParseURLs(s string) ([]string, error) {
	parts := strings.Split(s, ",")
	if len(parts) > maxServers {
		return nil, fmt.Errorf("-url: at most %d servers", maxServers)
	}
	urls := make([]string, 0, len(parts))
	seen := map[string]bool{}
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, errors.New("-url: empty URL in the list")
		}
		if err := CheckLoopback(p); err != nil {
			return nil, err
		}
		hp, _, err := target(p)
		if err != nil {
			return nil, fmt.Errorf("-url: %w", err)
		}
		if seen[hp] {
			return nil, fmt.Errorf("-url: %s given twice", hp)
		}
		seen[hp] = true
		urls = append(urls, p)
	}
	return urls, nil
}

// ParsePIDs parses -server-pid: empty, one process id, or several
// separated by commas.
func ParsePIDs(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxServers {
		return nil, fmt.Errorf("-server-pid: at most %d processes", maxServers)
	}
	pids := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-server-pid: %q is not a process id", strings.TrimSpace(p))
		}
		if slices.Contains(pids, n) {
			return nil, fmt.Errorf("-server-pid: %d given twice", n)
		}
		pids = append(pids, n)
	}
	return pids, nil
}

// target returns host:port to dial, with localhost pinned to 127.0.0.1 so
// that no resolver is involved.
func target(raw string) (hostport string, v4 bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, err
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	return net.JoinHostPort(host, u.Port()), ip != nil && ip.To4() != nil, nil
}
