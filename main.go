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
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
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
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chatd:", err)
		os.Exit(1)
	}
}

// config is everything an operator can set. Each flag takes its default from
// an environment variable, so compose files set env and people pass flags.
type config struct {
	addr         string
	port         int
	databaseURL  string
	sqlitePath   string
	historyLimit int
	bcryptCost   int
	maxMsgLen    int
	maxBuffer    int64
	pingInterval time.Duration
	pingTimeout  time.Duration
	bodyTimeout  time.Duration
	writeTimeout time.Duration
	publicDir    string
	sessionTTL   time.Duration
	lameDuck     time.Duration
	busURL       string
	busSubject   string
	dbMaxConns   int
	limits       server.Limits
	trusted      string
	origins      string
	debugAddr    string
	logFormat    string
	logLevel     string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("chatd", flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", env("ADDR", ""), "interface to listen on; empty means all (env ADDR)")
	fs.IntVar(&c.port, "port", envInt("PORT", 3000), "TCP port: 3000 for the primary, 3001 for the backup (env PORT)")
	fs.StringVar(&c.databaseURL, "database-url", env("DATABASE_URL", ""),
		"PostgreSQL URL, e.g. postgres://postgres@localhost:5432/chat?sslmode=disable; empty uses the embedded SQLite store (env DATABASE_URL)")
	fs.StringVar(&c.sqlitePath, "sqlite-path", env("SQLITE_PATH", "chat.db"), "file of the embedded store, used when no database URL is set (env SQLITE_PATH)")
	fs.IntVar(&c.historyLimit, "history-limit", envInt("HISTORY_LIMIT", 100),
		"messages sent to each new connection; 0 sends the whole history as the Node server did (env HISTORY_LIMIT)")
	fs.IntVar(&c.bcryptCost, "bcrypt-cost", envInt("BCRYPT_COST", 10), "bcrypt work factor of new password hashes (env BCRYPT_COST)")
	fs.IntVar(&c.maxMsgLen, "max-message-length", envInt("MAX_MESSAGE_LENGTH", 2000), "longest message in characters (env MAX_MESSAGE_LENGTH)")
	fs.Int64Var(&c.maxBuffer, "max-http-buffer-size", int64(envInt("MAX_HTTP_BUFFER_SIZE", 128<<10)),
		"largest Socket.IO packet or polling request body in bytes (env MAX_HTTP_BUFFER_SIZE)")
	fs.DurationVar(&c.pingInterval, "ping-interval", envDuration("PING_INTERVAL", 3*time.Second),
		"Engine.IO heartbeat interval; nginx.conf's proxy_read_timeout must stay above it (env PING_INTERVAL)")
	fs.DurationVar(&c.pingTimeout, "ping-timeout", envDuration("PING_TIMEOUT", 5*time.Second),
		"how long after a missed heartbeat a peer counts as gone; kept above -ping-interval (env PING_TIMEOUT)")
	fs.DurationVar(&c.sessionTTL, "session-ttl", envDuration("SESSION_TTL", 7*24*time.Hour),
		"how long a login token lets a client resume without the password (env SESSION_TTL)")
	fs.Float64Var(&c.limits.AuthPerIP, "auth-rate-per-ip", envFloat("AUTH_RATE_PER_IP", 5),
		"login+register attempts per second per client address; negative disables (env AUTH_RATE_PER_IP)")
	fs.IntVar(&c.limits.AuthBurstPerIP, "auth-burst-per-ip", envInt("AUTH_BURST_PER_IP", 500),
		"attempts one address may make at once before the rate applies (env AUTH_BURST_PER_IP)")
	fs.Float64Var(&c.limits.LoginPerUser, "login-rate-per-user", envFloat("LOGIN_RATE_PER_USER", 0.2),
		"login attempts per second on one username, from anywhere; negative disables (env LOGIN_RATE_PER_USER)")
	fs.IntVar(&c.limits.LoginBurstPerUser, "login-burst-per-user", envInt("LOGIN_BURST_PER_USER", 10),
		"login attempts on one username allowed at once (env LOGIN_BURST_PER_USER)")
	fs.Float64Var(&c.limits.MessagesPerUser, "message-rate", envFloat("MESSAGE_RATE", 10),
		"messages per second per user; negative disables (env MESSAGE_RATE)")
	fs.IntVar(&c.limits.MessageBurst, "message-burst", envInt("MESSAGE_BURST", 30),
		"messages a user may send at once, e.g. an outbox after a reconnect (env MESSAGE_BURST)")
	fs.Float64Var(&c.limits.PagesPerSocket, "page-rate", envFloat("PAGE_RATE", 2),
		"load older messages requests per second per socket; negative disables (env PAGE_RATE)")
	fs.IntVar(&c.limits.PageBurst, "page-burst", envInt("PAGE_BURST", 10),
		"history pages a socket may ask for at once (env PAGE_BURST)")
	fs.DurationVar(&c.bodyTimeout, "body-timeout", envDuration("BODY_TIMEOUT", 10*time.Second),
		"longest time an HTTP request body (a polling POST) may take to arrive; negative disables (env BODY_TIMEOUT)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", envDuration("WRITE_TIMEOUT", 10*time.Second),
		"a WebSocket client that takes no byte of what it is sent for this long is disconnected; negative disables (env WRITE_TIMEOUT)")
	fs.IntVar(&c.limits.ConnsPerIP, "max-conns-per-ip", envInt("MAX_CONNS_PER_IP", 1000),
		"concurrent connections per client address; negative disables (env MAX_CONNS_PER_IP)")
	fs.StringVar(&c.trusted, "trusted-proxies", env("TRUSTED_PROXIES", "127.0.0.0/8,::1/128"),
		"proxies (CIDRs) whose X-Forwarded-For names the client (env TRUSTED_PROXIES)")
	fs.StringVar(&c.origins, "allowed-origins", env("ALLOWED_ORIGINS", ""),
		"comma-separated browser origins allowed besides the server's own, or * (env ALLOWED_ORIGINS)")
	fs.DurationVar(&c.lameDuck, "lame-duck", envDuration("LAME_DUCK", 3*time.Second),
		"on SIGTERM, spread the disconnection of clients over this long so they reconnect elsewhere gradually (env LAME_DUCK)")
	fs.IntVar(&c.dbMaxConns, "db-max-conns", envInt("DB_MAX_CONNS", postgres.DefaultMaxConns),
		"PostgreSQL connections this server may hold at once; keep servers × this below max_connections (env DB_MAX_CONNS)")
	fs.StringVar(&c.busSubject, "bus-subject", env("BUS_SUBJECT", natsbus.Subject),
		"NATS subject the servers of one cluster share; give each cluster on one NATS server its own (env BUS_SUBJECT)")
	fs.StringVar(&c.busURL, "bus-url", env("BUS_URL", ""),
		"nats://host:4222 to connect the servers over NATS; empty uses PostgreSQL LISTEN/NOTIFY (env BUS_URL)")
	fs.StringVar(&c.publicDir, "public-dir", env("PUBLIC_DIR", ""),
		"serve the browser client from this directory instead of the built-in one (env PUBLIC_DIR)")
	fs.StringVar(&c.debugAddr, "debug-addr", env("DEBUG_ADDR", ""),
		"serve Go's profiler (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060; empty is off (env DEBUG_ADDR)")
	fs.StringVar(&c.logFormat, "log-format", env("LOG_FORMAT", "text"), "text or json (env LOG_FORMAT)")
	fs.StringVar(&c.logLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.historyLimit < 0 {
		return c, errors.New("-history-limit must be 0 (all) or more")
	}
	if c.dbMaxConns < 1 {
		return c, errors.New("-db-max-conns must be at least 1")
	}
	if c.busSubject == "" {
		return c, errors.New("-bus-subject must not be empty")
	}
	if c.debugAddr != "" {
		host, _, err := net.SplitHostPort(c.debugAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return c, fmt.Errorf("-debug-addr %q: must be a loopback address with a port, e.g. 127.0.0.1:6060 (the profiler must not face the internet)", c.debugAddr)
		}
	}
	trusted, err := limit.ParsePrefixes(c.trusted)
	if err != nil {
		return c, fmt.Errorf("-trusted-proxies: %w", err)
	}
	c.limits.TrustedProxies = trusted
	for _, o := range strings.Split(c.origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.limits.AllowedOrigins = append(c.limits.AllowedOrigins, o)
		}
	}
	return c, nil
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
	b, err := openBus(cfg, st, log)
	if err != nil {
		return err
	}
	defer b.Close()

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
		SessionTTL:        cfg.sessionTTL,
		Limits:            cfg.limits,
		Bus:               b,
		Public:            page,
	}, st, log)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.addr, strconv.Itoa(cfg.port)))
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
	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if cfg.databaseURL == "" {
		st, err := sqlite.Open(octx, cfg.sqlitePath)
		if err != nil {
			return nil, err
		}
		log.Info("using the embedded SQLite store", "path", cfg.sqlitePath)
		return st, nil
	}
	st, err := postgres.Open(octx, cfg.databaseURL)
	if err != nil {
		// lib/pq errors do not contain the password, but say where we
		// tried without it.
		return nil, fmt.Errorf("opening %s: %w", redactURL(cfg.databaseURL), err)
	}
	st.SetMaxConns(cfg.dbMaxConns)
	log.Info("using PostgreSQL", "database", redactURL(cfg.databaseURL), "max_conns", cfg.dbMaxConns)
	return st, nil
}

// openBus picks how servers sharing the database talk: NATS when a bus URL
// is given, else PostgreSQL NOTIFY; with the embedded store there is one
// server and no one to talk to.
func openBus(cfg config, st store.Store, log *slog.Logger) (bus.Bus, error) {
	pg, shared := st.(*postgres.Store)
	switch {
	case cfg.busURL != "" && !shared:
		return nil, errors.New("-bus-url needs -database-url: servers on the embedded store share nothing")
	case cfg.busURL != "":
		b, err := natsbus.New(cfg.busURL, cfg.busSubject, log)
		if err != nil {
			return nil, fmt.Errorf("connecting to the NATS bus: %w", err)
		}
		log.Info("bus: NATS", "url", redactURL(cfg.busURL))
		return b, nil
	case shared:
		log.Info("bus: PostgreSQL LISTEN/NOTIFY")
		return pgbus.New(pg.DB(), cfg.databaseURL, log), nil
	}
	return bus.Local{}, nil
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

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func envInt(key string, def int) int {
	if v := env(key, ""); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		fmt.Fprintf(os.Stderr, "chatd: ignoring %s=%q: not a whole number\n", key, v)
	}
	return def
}

func envFloat(key string, def float64) float64 {
	if v := env(key, ""); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
		fmt.Fprintf(os.Stderr, "chatd: ignoring %s=%q: not a number\n", key, v)
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v := env(key, ""); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		fmt.Fprintf(os.Stderr, "chatd: ignoring %s=%q: not a duration like 10s\n", key, v)
	}
	return def
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
