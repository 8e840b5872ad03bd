package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/server/socketio"
	"github.com/chatd/chat/server/socketio/engineio"
	"github.com/chatd/chat/server/timeouts"
	"github.com/chatd/chat/store"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/crypto/bcrypt"
)

// Config holds the server's settings. The zero value of each field means its
// default, given in the field's comment.
type Config struct {
	// HistoryLimit is how many recent messages `load all messages` sends
	// on connect. Default 100; negative means the whole history, as the
	// seed did.
	HistoryLimit int
	// BcryptCost is the work factor of new password hashes. Default 10,
	// the Node server's.
	BcryptCost int
	// MaxMessageLen is the longest message in characters. Default 2000.
	MaxMessageLen int
	// MaxHTTPBufferSize bounds one Socket.IO packet and one polling
	// request body, in bytes. Default 128 KiB.
	MaxHTTPBufferSize int64
	// PingInterval and PingTimeout are the Engine.IO heartbeat: a peer
	// silent for their sum is considered gone. Defaults 3 s and 5 s: a hung
	// server is noticed by its clients within 8 s (see nginx.conf).
	PingInterval, PingTimeout time.Duration
	// StoreTimeout bounds each store call. Default 5 s.
	StoreTimeout time.Duration
	// BodyTimeout bounds how long an HTTP request body (a polling POST)
	// may take to arrive; WriteTimeout how long a WebSocket peer may go
	// without taking a byte of what it is sent before it is cut off.
	// Defaults 10 s each. Negative disables the body timeout of the routes
	// other than /socket.io/ (package timeouts); the engine keeps both
	// whatever the setting.
	BodyTimeout, WriteTimeout time.Duration
	// PollBatch is the least time between two answers to one
	// long-polling client while messages keep coming (engineio.Options
	// says why). Default 250 ms; negative answers every message at once.
	PollBatch time.Duration
	// SessionTTL is how long a login token stays valid. Default 7 days.
	SessionTTL time.Duration
	// Bus connects this server to the others sharing its store. Nil means
	// this server is alone (bus.Local).
	Bus bus.Bus
	// ServerID names this process on the bus and in the presence table.
	// Default: random.
	ServerID string
	// Limits are the abuse limits; zero fields take their defaults.
	Limits Limits
	// Public is the browser client served at /. Nil serves nothing there.
	Public fs.FS
}

func (c *Config) setDefaults() {
	if c.HistoryLimit == 0 {
		c.HistoryLimit = 100
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = 10
	}
	if c.MaxMessageLen == 0 {
		c.MaxMessageLen = 2000
	}
	if c.MaxHTTPBufferSize == 0 {
		c.MaxHTTPBufferSize = 128 << 10
	}
	if c.PingInterval == 0 {
		c.PingInterval = 3 * time.Second
	}
	if c.PingTimeout == 0 {
		c.PingTimeout = 5 * time.Second
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = 5 * time.Second
	}
	durationDefault(&c.BodyTimeout, 10*time.Second)
	durationDefault(&c.WriteTimeout, 10*time.Second)
	if c.SessionTTL == 0 {
		c.SessionTTL = 7 * 24 * time.Hour
	}
	if c.Bus == nil {
		c.Bus = bus.Local{}
	}
	c.Limits.setDefaults()
	if c.ServerID == "" {
		var b [6]byte
		rand.Read(b[:])
		c.ServerID = hex.EncodeToString(b[:])
	}
}

// durationDefault sets a zero d to def and a negative one to zero (off).
func durationDefault(d *time.Duration, def time.Duration) {
	switch {
	case *d == 0:
		*d = def
	case *d < 0:
		*d = 0
	}
}

// Server is the chat service. Create it with New, mount Handler, and call
// Close once to disconnect every socket and stop its goroutines. It does not
// close the store.
type Server struct {
	cfg    Config
	store  store.Store
	log    *slog.Logger
	events socketio.Events // every socket's handlers (eventTable)

	id    string // cfg.ServerID
	io    *socketio.Server
	relay *relay
	guard *guard
	// refusals logs rate-limit and bad-input refusals, sampled.
	refusals *sampledLog
	met      *metrics
	hub      *hub
	online   *online
	// members knows which rooms the local users are in: who a room's
	// messages go to (deliver).
	members *memberships
	// typing throttles typing notices per user and room.
	typing *typingThrottle
	// announced: direct rooms whose members this server announced.
	announced announcedSet

	// bcryptSlots bounds how many bcrypt computations run at once (one per
	// core). A burst of 450 registrations otherwise starts 450 hashes that
	// share the CPU and all finish late, starving history reads and message
	// delivery past their deadlines; queued, they finish in order at the
	// machine's full rate and leave the scheduler room for everything else.
	bcryptSlots chan struct{}

	// dummyHash is compared against when a login names an unknown user, so
	// that answering costs the same bcrypt work either way and response
	// time does not reveal which usernames exist.
	dummyHash []byte

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New returns a running server on st. It logs to log with stable keys (sid,
// user, err) and never logs a password, hash or token.
func New(cfg Config, st store.Store, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	if cfg.BcryptCost < bcrypt.MinCost || cfg.BcryptCost > bcrypt.MaxCost {
		return nil, errors.New("server: bcrypt cost must be between 4 and 31")
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a real password"), cfg.BcryptCost)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:         cfg,
		id:          cfg.ServerID,
		store:       st,
		log:         log,
		hub:         newHub(),
		dummyHash:   dummy,
		bcryptSlots: make(chan struct{}, runtime.GOMAXPROCS(0)),
		ctx:         ctx,
		cancel:      cancel,
	}

	s.guard = newGuard(cfg.Limits)
	s.refusals = newSampledLog()
	s.met = newMetrics(s)
	s.met.reg.MustRegister(s.guard.unforwarded)
	s.hub.onDeliver = func(n int) { s.met.delivered.Add(float64(n)) }
	s.io = socketio.NewServer(socketio.Options{
		Engine: engineio.Options{
			PingInterval: cfg.PingInterval,
			PingTimeout:  cfg.PingTimeout,
			MaxPayload:   cfg.MaxHTTPBufferSize,
			AllowEIO3:    true, // socket.io-client 2.x, as some seed deployments still ship
			WriteTimeout: cfg.WriteTimeout,
			PollTimeout:  cfg.BodyTimeout,
			PollBatch:    cfg.PollBatch,
			// Which origins may connect is decided before the engine
			// (guard.checkOrigin, in Handler); here only who the peer is,
			// kept as a few bytes instead of the request.
			Accept: func(r *http.Request) (any, error) {
				pr := s.guard.peerOf(r)
				if pr.unnamed {
					s.guard.noteUnnamed(s.log, pr)
				}
				return pr, nil
			},
			OnClose:          s.engineClosed,
			OnUpgradeRefused: s.upgradeRefused,
			OnSlowPeer: func(es *engineio.Session) {
				s.met.rejections.WithLabelValues("slow_peer").Inc()
				s.refusals.Warn(s.log, "disconnected a client that reads too slowly", "sid", es.ID())
			},
		},
		ConnectTimeout: 10 * time.Second,
		OnConnection:   s.onConnection,
		ServeClient:    true, // pages written for Node load /socket.io/socket.io.js
		OnError: func(sid string, err error) {
			s.met.rejections.WithLabelValues("protocol").Inc()
			s.refusals.Info(s.log, "closed a connection for bad input", "sid", sid, "err", err)
		},
	})
	s.online = newOnline(func(users []string) {
		s.io.Emit("get users", users)
	}, st, cfg.Bus, s.id, log)
	s.relay = newRelay(s)
	s.members = newMemberships(st, log)
	s.events = s.eventTable()
	s.members.changed = s.roomsChanged
	s.typing = newTypingThrottle(typingEvery, cfg.Limits)
	fctx, fcancel := context.WithTimeout(ctx, cfg.StoreTimeout)
	// The newest id in any room: RecentMessages reads general only, and
	// a floor below a room's newest message would make a catch-up deliver
	// that room's older lines live.
	newest, err := st.LatestMessageID(fctx)
	fcancel()
	if err != nil {
		// Not fatal: the store may come up later (the server then runs
		// degraded, see recentMessages); a catch-up then starts lower.
		log.Warn("reading the newest message id at start-up", "err", err)
	} else {
		s.relay.setFloor(newest)
	}
	if err := cfg.Bus.Subscribe(s.relay); err != nil {
		cancel()
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.online.run(ctx)
	}()
	s.wg.Go(func() { s.members.run(ctx, cfg.StoreTimeout) })
	return s, nil
}

// errBusy means a bcrypt slot did not free up in time.
var errBusy = errors.New("server: too many password checks in progress")

// withBcrypt runs fn in a bcrypt slot, waiting at most 30 s for one.
func (s *Server) withBcrypt(fn func()) error {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case s.bcryptSlots <- struct{}{}:
	case <-t.C:
		return errBusy
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	defer func() { <-s.bcryptSlots }()
	fn()
	return nil
}

// Handler returns the HTTP routes: Socket.IO and its client bundle under
// /socket.io/, the health probes, and the browser client at /.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// The origin check comes before the engine. The engine keeps its own
	// body and write deadlines, and takes WebSocket connections over from
	// net/http, so it is not wrapped by package timeouts (below).
	sio := s.guard.checkOrigin(s.io,
		func(origin string) {
			s.met.rejections.WithLabelValues("origin").Inc()
			s.log.Warn("refused a connection from another site's page", "origin", logName(origin))
		})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.met.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.cfg.Public != nil {
		mux.Handle("/", securityHeaders(http.FileServerFS(s.cfg.Public)))
	}
	// Every other route: no client may stall a request body without end
	// (see package timeouts).
	rest := timeouts.Wrap(mux, s.cfg.BodyTimeout)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/socket.io/") {
			sio.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
}

// readyz reports whether the store answers, so that a load balancer can
// stop sending users to a server that cannot log them in.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness check failed", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("store unreachable\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

// securityHeaders lets the page load only its own scripts and styles, so
// that even a bug that inserted user text as HTML could not run a script.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
			"img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "+
			"frame-ancestors 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}

// Close disconnects every socket, ends long polls and stops the server's
// goroutines. It is safe to call more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		s.cancel()
		s.io.Close()
		s.wg.Wait()
		s.online.forget() // after run stopped, so nothing re-adds rows
	})
}

// LameDuck disconnects the connected sockets in small batches spread over
// d, so that their clients reconnect to the other servers gradually instead
// of in one storm, and returns when all are gone or d has passed. Call it
// after the listener is closed and before Close.
func (s *Server) LameDuck(d time.Duration) {
	if d <= 0 {
		return
	}
	s.hub.mu.RLock()
	conns := make([]*conn, 0, len(s.hub.conns))
	for c := range s.hub.conns {
		conns = append(conns, c)
	}
	s.hub.mu.RUnlock()
	if len(conns) == 0 {
		return
	}
	const batches = 20
	per := (len(conns) + batches - 1) / batches
	pause := d / batches
	s.log.Info("lame duck: handing clients over", "sockets", len(conns), "over", d)
	for i := 0; i < len(conns); i += per {
		for _, c := range conns[i:min(i+per, len(conns))] {
			c.disconnect("server shutting down")
		}
		time.Sleep(pause)
	}
}
