// Command chatd is the chat server: a drop-in replacement for the Node.js
// socket.io + PostgreSQL chat of the seed report, on the same port, the same
// database and the same client.
//
// With DATABASE_URL it uses PostgreSQL (the seed's tables; several processes
// may share it, e.g. the primary on port 3000 and the backup on 3001 behind
// nginx). Without it, it keeps everything in an embedded SQLite file, so
// `go run .` is all a first try needs.
package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/bus/natsbus"
	"github.com/chatd/chat/bus/pgbus"
	"github.com/chatd/chat/public"
	"github.com/chatd/chat/server"
	"github.com/chatd/chat/server/limit"
	"github.com/chatd/chat/store"
	"github.com/chatd/chat/store/postgres"
	"github.com/chatd/chat/store/sqlite"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"golang.org/x/crypto/bcrypt"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		code := 1
		if errors.As(err, new(*settingsError)) {
			code = 2 // as the flag package: the command line or environment is wrong
		}
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "chatd:", line)
		}
		os.Exit(code)
	}
}

// config is everything an operator can set. Each flag has an environment
// variable, so compose files set env and people pass flags; flags win.
type config struct {
	addr             string
	port             int
	databaseURL      string
	dbConnectTimeout time.Duration
	sqlitePath       string
	historyLimit     int
	bcryptCost       int
	maxMsgLen        int
	maxBuffer        int64
	pingInterval     time.Duration
	pingTimeout      time.Duration
	bodyTimeout      time.Duration
	writeTimeout     time.Duration
	pollBatch        time.Duration
	publicDir        string
	sessionTTL       time.Duration
	lameDuck         time.Duration
	busURL           string
	busSubject       string
	dbMaxConns       int
	limits           server.Limits
	trusted          string
	origins          string
	debugAddr        string
	logFormat        string
	logLevel         string
}

// settingsError is a setting that does not parse or is out of range. Start-up
// stops on it (exit status 2) instead of running with the default: a backup
// whose PORT=30o1 fell back to 3000 used to take the primary's port.
type settingsError struct{ error }

func (e *settingsError) Unwrap() error { return e.error }

// errShape is what a parser returns when the value is simply not of the
// wanted shape: the message then says only what is wanted, not the
// parser's own words (`strconv.Atoi: parsing "30o1": invalid syntax`).
var errShape = errors.New("wrong shape")

// setting is one flag and its environment variable, checked by one parser
// whichever of the two the value came from.
type setting struct {
	flag, env string
	want      string // what a good value looks like, for messages
	def       string
	usage     string
	parse     func(string) error // stores a good value; errShape or a detail otherwise
	fromFlag  bool
}

func (st *setting) refuse(v string, err error, fromEnv bool) error {
	msg := fmt.Sprintf("-%s=%q: want %s (flag; the environment variable is %s)", st.flag, v, st.want, st.env)
	if fromEnv {
		msg = fmt.Sprintf("%s=%q: want %s (environment; the flag is -%s)", st.env, v, st.want, st.flag)
	}
	if !errors.Is(err, errShape) {
		msg += ": " + err.Error()
	}
	return &settingsError{errors.New(msg)}
}

// settings is the table of every setting, in the order -h lists them.
type settings struct {
	fs      *flag.FlagSet
	list    []*setting
	flagErr error // the refusal of a bad flag value, kept for Parse's caller
}

func (s *settings) add(name, env, def, usage, want string, parse func(string) error) {
	st := &setting{flag: name, env: env, want: want, def: def, usage: usage, parse: parse}
	if err := parse(def); err != nil {
		panic(fmt.Sprintf("chatd: the default of -%s (%q) fails its own check: %v", name, def, err))
	}
	s.list = append(s.list, st)
	s.fs.Func(name, usage, func(v string) error {
		st.fromFlag = true
		if err := st.parse(v); err != nil {
			s.flagErr = st.refuse(v, err, false)
			return s.flagErr
		}
		return nil
	})
}

// usage lists every setting with its variable, default and what it
// wants, in the order of the table in README.md.
func (s *settings) usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: chatd [-flag value ...]. Every flag has an environment variable; flags win.")
	for _, st := range s.list {
		def := st.def
		if def == "" {
			def = "none"
		}
		fmt.Fprintf(w, "  -%s, %s (default %s)\n      %s\n      wants %s\n", st.flag, st.env, def, st.usage, st.want)
	}
}

// parse reads args, then the environment for every setting no flag gave.
// An empty variable counts as unset (compose's `PORT:` with no value). All
// bad variables are reported at once, so a broken unit file is fixed in one
// go.
func (s *settings) parse(args []string) error {
	s.fs.SetOutput(io.Discard) // our own messages below; -h prints usage itself
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			s.usage(os.Stderr)
			return err
		}
		if s.flagErr != nil {
			return s.flagErr
		}
		return &settingsError{fmt.Errorf("%w (chatd -h lists the settings)", err)}
	}
	if s.fs.NArg() > 0 {
		return &settingsError{fmt.Errorf("unexpected argument %q: settings are flags like -port 3001 or environment variables", s.fs.Arg(0))}
	}
	var errs []error
	for _, st := range s.list {
		if st.fromFlag {
			continue
		}
		if v := os.Getenv(st.env); v != "" {
			if err := st.parse(v); err != nil {
				errs = append(errs, st.refuse(v, err, true))
			}
		}
	}
	return errors.Join(errs...)
}

// Parsers. Each stores into p only a value that passes ok.

func intIn(p *int, ok func(int) bool) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || !ok(n) {
			return errShape
		}
		*p = n
		return nil
	}
}

func int64In(p *int64, ok func(int64) bool) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || !ok(n) {
			return errShape
		}
		*p = n
		return nil
	}
}

// rate parses a per-second rate. Zero is refused: the server would read it
// as "use the default", which is not what someone who typed 0 meant.
func rate(p *float64) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
			return errShape
		}
		*p = f
		return nil
	}
}

func durationIn(p *time.Duration, ok func(time.Duration) bool) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || !ok(d) {
			return errShape
		}
		*p = d
		return nil
	}
}

func text(p *string, ok func(string) error) func(string) error {
	return func(v string) error {
		if ok != nil {
			if err := ok(v); err != nil {
				return err
			}
		}
		*p = v
		return nil
	}
}

// oneOf takes one of vals, in any case (LOG_LEVEL=INFO is fine), and
// stores it in lower case.
func oneOf(p *string, vals ...string) func(string) error {
	return func(v string) error {
		v = strings.ToLower(v)
		if !slices.Contains(vals, v) {
			return errShape
		}
		*p = v
		return nil
	}
}

func positive[T int | int64 | time.Duration](n T) bool    { return n > 0 }
func nonNegative[T int | int64 | time.Duration](n T) bool { return n >= 0 }

// nonZero is for limits where a negative value turns the limit off and
// zero would silently mean the default (server.Limits).
func nonZero[T int | time.Duration](n T) bool { return n != 0 }

// parseFlags reads the settings from args and the environment.
func parseFlags(args []string) (config, error) {
	var c config
	err := newSettings(&c).parse(args)
	return c, err
}

// newSettings is the table of every setting, storing into c.
func newSettings(c *config) *settings {
	s := &settings{fs: flag.NewFlagSet("chatd", flag.ContinueOnError)}
	const (
		wantDuration = "a duration above zero, like 10s or 2m"
		wantRate     = "a number of requests per second above 0 (like 5 or 0.5), or negative to turn the limit off"
		wantBurst    = "a whole number, 1 or more"
	)
	s.add("addr", "ADDR", "", "interface to listen on; empty means all", "an interface address", text(&c.addr, nil))
	s.add("port", "PORT", "3000", "TCP port: 3000 for the primary, 3001 for the backup",
		"a TCP port number 1-65535", intIn(&c.port, func(n int) bool { return n >= 1 && n <= 65535 }))
	s.add("database-url", "DATABASE_URL", "",
		"PostgreSQL URL, e.g. postgres://postgres@localhost:5432/chat?sslmode=disable; empty uses the embedded SQLite store",
		"a PostgreSQL URL", text(&c.databaseURL, nil))
	s.add("db-connect-timeout", "DB_CONNECT_TIMEOUT", "30s",
		"at start-up, how long to keep retrying a PostgreSQL that is not reachable yet; 0 tries once",
		"a duration of 0 (try once) or more, like 30s", durationIn(&c.dbConnectTimeout, nonNegative))
	s.add("sqlite-path", "SQLITE_PATH", "chat.db", "file of the embedded store, used when no database URL is set",
		"a file path", text(&c.sqlitePath, func(v string) error {
			if v == "" {
				return errShape
			}
			return nil
		}))
	s.add("history-limit", "HISTORY_LIMIT", "100",
		"messages sent to each new connection; 0 sends the whole history as the Node server did",
		"a whole number of messages, 0 (the whole history) or more", intIn(&c.historyLimit, nonNegative))
	s.add("bcrypt-cost", "BCRYPT_COST", "10", "bcrypt work factor of new password hashes",
		fmt.Sprintf("a whole number %d-%d (bcrypt's range)", bcrypt.MinCost, bcrypt.MaxCost),
		intIn(&c.bcryptCost, func(n int) bool { return n >= bcrypt.MinCost && n <= bcrypt.MaxCost }))
	s.add("max-message-length", "MAX_MESSAGE_LENGTH", "2000", "longest message in characters",
		"a whole number of characters, 1 or more", intIn(&c.maxMsgLen, positive))
	s.add("max-http-buffer-size", "MAX_HTTP_BUFFER_SIZE", strconv.Itoa(128<<10),
		"largest Socket.IO packet or polling request body in bytes",
		"a whole number of bytes, 1 or more", int64In(&c.maxBuffer, positive))
	s.add("ping-interval", "PING_INTERVAL", "3s",
		"Engine.IO heartbeat interval; nginx.conf's proxy_read_timeout must stay above it",
		wantDuration, durationIn(&c.pingInterval, positive))
	s.add("ping-timeout", "PING_TIMEOUT", "5s",
		"how long after a missed heartbeat a peer counts as gone; kept above -ping-interval",
		wantDuration, durationIn(&c.pingTimeout, positive))
	s.add("session-ttl", "SESSION_TTL", (7 * 24 * time.Hour).String(),
		"how long a login token lets a client resume without the password",
		wantDuration, durationIn(&c.sessionTTL, positive))
	s.add("auth-rate-per-ip", "AUTH_RATE_PER_IP", "5",
		"login+register attempts per second per client address; negative disables", wantRate, rate(&c.limits.AuthPerIP))
	s.add("auth-burst-per-ip", "AUTH_BURST_PER_IP", "500",
		"attempts one address may make at once before the rate applies", wantBurst, intIn(&c.limits.AuthBurstPerIP, positive))
	s.add("auth-rate-per-proxy", "AUTH_RATE_PER_PROXY", "20",
		"login+register attempts per second of all clients behind one trusted proxy that sends no X-Forwarded-For (the report's nginx block); negative disables", wantRate, rate(&c.limits.AuthPerProxy))
	s.add("auth-burst-per-proxy", "AUTH_BURST_PER_PROXY", "600",
		"attempts the clients behind such a proxy may make at once before the rate applies", wantBurst, intIn(&c.limits.AuthBurstPerProxy, positive))
	s.add("login-rate-per-user", "LOGIN_RATE_PER_USER", "0.2",
		"login attempts per second on one username, from anywhere; negative disables", wantRate, rate(&c.limits.LoginPerUser))
	s.add("login-burst-per-user", "LOGIN_BURST_PER_USER", "10",
		"login attempts on one username allowed at once", wantBurst, intIn(&c.limits.LoginBurstPerUser, positive))
	s.add("message-rate", "MESSAGE_RATE", "10",
		"messages per second per user; negative disables", wantRate, rate(&c.limits.MessagesPerUser))
	s.add("message-burst", "MESSAGE_BURST", "30",
		"messages a user may send at once, e.g. an outbox after a reconnect", wantBurst, intIn(&c.limits.MessageBurst, positive))
	s.add("page-rate", "PAGE_RATE", "2",
		"load older messages requests per second per socket; negative disables", wantRate, rate(&c.limits.PagesPerSocket))
	s.add("page-burst", "PAGE_BURST", "10",
		"history pages a socket may ask for at once", wantBurst, intIn(&c.limits.PageBurst, positive))
	s.add("room-op-rate", "ROOM_OP_RATE", "5",
		"room changes (create, join or leave a room, mark read) per second per user; negative disables", wantRate, rate(&c.limits.RoomOpsPerUser))
	s.add("room-op-burst", "ROOM_OP_BURST", "30",
		"room changes a user may make at once, e.g. a page marking several rooms read", wantBurst, intIn(&c.limits.RoomOpsBurst, positive))
	s.add("typing-rate", "TYPING_RATE", "2",
		"typing notices per second per user across all rooms (each room takes one every 2 s whatever this says); negative disables", wantRate, rate(&c.limits.TypingPerUser))
	s.add("typing-burst", "TYPING_BURST", "6",
		"typing notices a user may send at once across rooms", wantBurst, intIn(&c.limits.TypingBurst, positive))
	s.add("body-timeout", "BODY_TIMEOUT", "10s",
		"longest time an HTTP request body (a polling POST) may take to arrive; negative disables",
		"a duration like 10s, or negative to turn the timeout off", durationIn(&c.bodyTimeout, nonZero))
	s.add("write-timeout", "WRITE_TIMEOUT", "10s",
		"a WebSocket client that takes no byte of what it is sent for this long is disconnected; negative disables",
		"a duration like 10s, or negative to turn the timeout off", durationIn(&c.writeTimeout, nonZero))
	s.add("poll-batch", "POLL_BATCH", "250ms",
		"least time between two answers to one long-polling client while messages keep coming; negative answers each at once",
		"a duration like 150ms, or negative to answer every message at once", durationIn(&c.pollBatch, nonZero))
	s.add("max-conns-per-ip", "MAX_CONNS_PER_IP", "1000",
		"concurrent connections per client address; negative disables",
		"a whole number of connections, 1 or more, or negative to turn the limit off", intIn(&c.limits.ConnsPerIP, nonZero))
	s.add("trusted-proxies", "TRUSTED_PROXIES", "127.0.0.0/8,::1/128",
		"proxies (CIDRs) whose X-Forwarded-For names the client",
		"comma-separated addresses or CIDRs, like 127.0.0.0/8,10.0.0.5", func(v string) error {
			p, err := limit.ParsePrefixes(v)
			if err != nil {
				return err
			}
			c.trusted, c.limits.TrustedProxies = v, p
			return nil
		})
	s.add("allowed-origins", "ALLOWED_ORIGINS", "",
		"comma-separated browser origins allowed besides the server's own, or *",
		"comma-separated origins like https://chat.example.com, or *", func(v string) error {
			c.origins, c.limits.AllowedOrigins = v, nil
			for o := range strings.SplitSeq(v, ",") {
				if o = strings.TrimSpace(o); o != "" {
					c.limits.AllowedOrigins = append(c.limits.AllowedOrigins, o)
				}
			}
			return nil
		})
	s.add("lame-duck", "LAME_DUCK", "3s",
		"on SIGTERM, spread the disconnection of clients over this long so they reconnect elsewhere gradually",
		"a duration of 0 (all at once) or more, like 3s", durationIn(&c.lameDuck, nonNegative))
	s.add("db-max-conns", "DB_MAX_CONNS", strconv.Itoa(postgres.DefaultMaxConns),
		"PostgreSQL connections this server may hold at once; keep servers × this below max_connections",
		"a whole number of connections, 1 or more", intIn(&c.dbMaxConns, positive))
	s.add("bus-subject", "BUS_SUBJECT", natsbus.Subject,
		"NATS subject the servers of one cluster share; give each cluster on one NATS server its own",
		"a NATS subject, not empty", text(&c.busSubject, func(v string) error {
			if v == "" {
				return errShape
			}
			return nil
		}))
	s.add("bus-url", "BUS_URL", "",
		"nats://host:4222 to connect the servers over NATS; empty uses PostgreSQL LISTEN/NOTIFY",
		"a NATS URL like nats://host:4222", text(&c.busURL, nil))
	s.add("public-dir", "PUBLIC_DIR", "",
		"serve the browser client from this directory instead of the built-in one",
		"an existing directory", text(&c.publicDir, func(v string) error {
			if v == "" {
				return nil
			}
			if fi, err := os.Stat(v); err != nil || !fi.IsDir() {
				return errShape
			}
			return nil
		}))
	s.add("debug-addr", "DEBUG_ADDR", "",
		"serve Go's profiler (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060; empty is off",
		"a loopback address with a port, e.g. 127.0.0.1:6060 (the profiler must not face the internet)",
		text(&c.debugAddr, func(v string) error {
			if v == "" {
				return nil
			}
			host, _, err := net.SplitHostPort(v)
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				return errShape
			}
			return nil
		}))
	s.add("log-format", "LOG_FORMAT", "text", "text or json", "text or json", oneOf(&c.logFormat, "text", "json"))
	s.add("log-level", "LOG_LEVEL", "info", "debug, info, warn or error", "debug, info, warn or error",
		oneOf(&c.logLevel, "debug", "info", "warn", "error"))
	return s
}

func run(args []string) error {
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	// Libraries that log through log/slog's default (nbio, under the
	// engine) write in the same format and at the same level.
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if c, ok := st.(store.Closer); ok {
			c.Close()
		}
	}()
	b, busName, err := openBus(cfg, st, log)
	if err != nil {
		return err
	}
	defer b.Close()
	logStore(log, cfg, busName)

	var page fs.FS = public.FS
	if cfg.publicDir != "" {
		page = os.DirFS(cfg.publicDir)
	}
	history := cfg.historyLimit
	if history == 0 {
		history = -1 // server.Config: negative means all
	}
	srv, err := server.New(server.Config{
		HistoryLimit:      history,
		BcryptCost:        cfg.bcryptCost,
		MaxMessageLen:     cfg.maxMsgLen,
		MaxHTTPBufferSize: cfg.maxBuffer,
		PingInterval:      cfg.pingInterval,
		PingTimeout:       cfg.pingTimeout,
		BodyTimeout:       cfg.bodyTimeout,
		WriteTimeout:      cfg.writeTimeout,
		PollBatch:         cfg.pollBatch,
		SessionTTL:        cfg.sessionTTL,
		Limits:            cfg.limits,
		Bus:               b,
		Public:            page,
	}, st, log)
	if err != nil {
		return err
	}

	// No TCP keepalive on accepted connections: the Engine.IO heartbeat
	// already finds a dead peer within PING_INTERVAL + PING_TIMEOUT, and
	// the four setsockopt calls per accept were 8 % of the server's CPU
	// behind a proxy that opens a connection per request (the seed
	// report's nginx block; loadtest/RESULTS.md, pollnginx1000r20).
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(cfg.addr, strconv.Itoa(cfg.port)))
	if err != nil {
		srv.Close()
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	if cfg.debugAddr != "" {
		go serveDebug(cfg.debugAddr, log)
	}
	log.Info("listening", "addr", ln.Addr().String(), "store", storeKind(cfg), "history_limit", cfg.historyLimit)

	select {
	case err := <-serveErr:
		srv.Close()
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills the process the default way
	log.Info("shutting down", "lame_duck", cfg.lameDuck)
	// Stop accepting: Shutdown closes the listener at once, so nginx sends
	// new connections to the other server, then waits for open requests.
	shutdownDone := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.lameDuck+15*time.Second)
		defer cancel()
		shutdownDone <- hs.Shutdown(sctx)
	}()
	// Lame duck: hand the connected clients over to the other servers a
	// few at a time rather than all at once, so they do not reconnect in
	// one storm (nats-server's lame-duck mode). Then Socket.IO closes what
	// is left and ends long polls, which Shutdown is waiting on; Shutdown
	// does not track hijacked WebSocket connections, Close ends them.
	srv.LameDuck(cfg.lameDuck)
	srv.Close()
	if err := <-shutdownDone; err != nil {
		log.Warn("http shutdown", "err", err)
	}
	log.Info("stopped")
	return nil
}

func openStore(ctx context.Context, cfg config, log *slog.Logger) (store.Store, error) {
	if cfg.databaseURL == "" {
		octx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return sqlite.Open(octx, cfg.sqlitePath)
	}
	st, err := openPostgres(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	st.SetMaxConns(cfg.dbMaxConns)
	return st, nil
}

// connectWaits are the pauses between attempts to reach PostgreSQL at
// start-up: quick at first (a database that is a second from ready), then
// every 5 s until the -db-connect-timeout budget is spent.
var connectWaits = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second}

// connectPlan returns when each attempt starts, counted from the first:
// the first at once, the last at the budget itself, so a database that
// comes up just before the budget ends is still found.
func connectPlan(budget time.Duration) []time.Duration {
	plan := []time.Duration{0}
	for i := 0; plan[len(plan)-1] < budget; i++ {
		next := plan[len(plan)-1] + connectWaits[min(i, len(connectWaits)-1)]
		plan = append(plan, min(next, budget))
	}
	return plan
}

// openPostgres connects to PostgreSQL and applies the migrations, waiting
// for a database that is not reachable yet for up to -db-connect-timeout:
// under compose or systemd the database often starts with the chat
// servers, and exiting at once would leave the retry to a supervisor that
// may not be there. Each failed attempt is one log line. Errors a retry
// cannot fix (a wrong password, no such database, a refused migration) end
// the wait at once.
func openPostgres(ctx context.Context, cfg config, log *slog.Logger) (*postgres.Store, error) {
	where := redactURL(cfg.databaseURL)
	plan := connectPlan(cfg.dbConnectTimeout)
	start := time.Now()
	var last error
	n := 0
	for i, at := range plan {
		if i > 0 && time.Since(start) > cfg.dbConnectTimeout {
			break // slow attempts (a host that drops packets) used the budget up
		}
		if wait := time.Until(start.Add(at)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("stopped while waiting for PostgreSQL at %s (last error: %v)", where, last)
			case <-t.C:
			}
		}
		n++
		st, err := tryPostgres(ctx, cfg.databaseURL)
		if err == nil {
			if n > 1 {
				log.Info("PostgreSQL reachable", "attempt", fmt.Sprintf("%d of %d", n, len(plan)), "database", where,
					"after", time.Since(start).Round(time.Millisecond))
			}
			return st, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("stopped while waiting for PostgreSQL at %s (last error: %v)", where, err)
		}
		if !retryable(err) {
			// lib/pq errors do not contain the password; say where we
			// tried without it.
			return nil, fmt.Errorf("opening %s: %w", where, err)
		}
		last = err
		next := "none, giving up"
		if i+1 < len(plan) && time.Since(start) <= cfg.dbConnectTimeout {
			next = max(time.Until(start.Add(plan[i+1])), 0).Round(time.Millisecond).String()
		}
		log.Warn("PostgreSQL not reachable yet", "attempt", fmt.Sprintf("%d of %d", n, len(plan)), "database", where,
			"err", err, "next_attempt_in", next)
	}
	attempts := "1 attempt"
	if n > 1 {
		attempts = fmt.Sprintf("%d attempts", n)
	}
	return nil, fmt.Errorf("PostgreSQL at %s not reachable after %s in %s (-db-connect-timeout / DB_CONNECT_TIMEOUT=%s): %w",
		where, attempts, time.Since(start).Round(100*time.Millisecond), cfg.dbConnectTimeout, last)
}

// tryPostgres is one attempt: a ping bounded by a few seconds (a host
// that drops packets must not eat the whole budget in one attempt), then
// the real open with the migrations, which may take longer on a large
// database.
func tryPostgres(ctx context.Context, dsn string) (*postgres.Store, error) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = db.PingContext(pctx)
	cancel()
	db.Close()
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return postgres.Open(octx, dsn)
}

// retryable tells a database that is not there yet (refused, unresolvable,
// timing out, starting up, out of connection slots) from one that answered
// with a refusal a retry cannot fix.
func retryable(err error) bool {
	if pqErr := pq.As(err); pqErr != nil {
		switch pqErr.Code.Class() {
		case pqerror.ClassConnectionException, pqerror.ClassOperatorIntervention, pqerror.ClassInsufficientResources:
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// openBus picks how servers sharing the database talk: NATS when a bus URL
// is given, else PostgreSQL NOTIFY; with the embedded store there is one
// server and no one to talk to. It also says, for the start-up log line,
// which bus it picked.
func openBus(cfg config, st store.Store, log *slog.Logger) (bus.Bus, string, error) {
	pg, shared := st.(*postgres.Store)
	switch {
	case cfg.busURL != "" && !shared:
		return nil, "", errors.New("-bus-url needs -database-url: servers on the embedded store share nothing")
	case cfg.busURL != "":
		b, err := natsbus.New(cfg.busURL, cfg.busSubject, log)
		if err != nil {
			return nil, "", fmt.Errorf("connecting to the NATS bus: %w", err)
		}
		return b, fmt.Sprintf("NATS at %s, subject %s", redactURL(cfg.busURL), cfg.busSubject), nil
	case shared:
		return pgbus.New(pg.DB(), cfg.databaseURL, log), "PostgreSQL LISTEN/NOTIFY", nil
	}
	return bus.Local{}, "", nil
}

// logStore says in one line which store this server uses. On the embedded
// store it says plainly that the server is alone: two such servers behind
// one nginx share nothing, and users would see accounts and history
// depend on which server they reached.
func logStore(log *slog.Logger, cfg config, busName string) {
	if cfg.databaseURL == "" {
		path, err := filepath.Abs(cfg.sqlitePath)
		if err != nil {
			path = cfg.sqlitePath
		}
		log.Info(fmt.Sprintf("store: this server's own SQLite file %s; single-server: any other server, even behind the same nginx, "+
			"shares no users and no history with this one (set DATABASE_URL to share a PostgreSQL database)", path),
			"store", "sqlite", "path", path)
		return
	}
	log.Info(fmt.Sprintf("store: PostgreSQL at %s, shared by every server that uses it; bus between the servers: %s",
		redactURL(cfg.databaseURL), busName),
		"store", "postgres", "database", redactURL(cfg.databaseURL), "max_conns", cfg.dbMaxConns, "bus", busName)
}

func storeKind(cfg config) string {
	if cfg.databaseURL == "" {
		return "sqlite"
	}
	return "postgres"
}

// redactURL hides the password of a database URL so it can be logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "(database URL not shown)"
	}
	return u.Redacted()
}

func newLogger(cfg config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("-log-format must be text or json, not %q", cfg.logFormat)
}

// serveDebug serves Go's profiler on addr (loopback only, checked in
// parseFlags), on its own mux so that none of it reaches the public port.
func serveDebug(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("profiler listening", "addr", addr)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Error("profiler stopped", "err", err)
	}
}
