package server

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/chatd/chat/server/limit"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Limits are the abuse limits. A zero field takes its default; a negative
// rate or count disables that limit.
type Limits struct {
	// AuthPerIP and AuthBurstPerIP bound login and register attempts from
	// one client address. Defaults 5/s with a burst of 500: the report's
	// test registers 450 users from one machine at once.
	AuthPerIP      float64
	AuthBurstPerIP int
	// LoginPerUser and LoginBurstPerUser bound login attempts on one
	// username, whoever makes them: the defence against password
	// guessing spread over many addresses. Defaults 0.2/s (12 a minute),
	// burst 10.
	LoginPerUser      float64
	LoginBurstPerUser int
	// MessagesPerUser and MessageBurst bound `send message` per user.
	// Defaults 10/s, burst 30 (an outbox flushed after a reconnect).
	MessagesPerUser float64
	MessageBurst    int
	// PagesPerSocket and PageBurst bound `load older messages` per
	// socket: each answer can weigh 200 KB, and a client that asks
	// without reading would otherwise make the server queue them. Defaults
	// 2/s, burst 10: a reader scrolling up fetches a page every few
	// seconds.
	PagesPerSocket float64
	PageBurst      int
	// RoomOpsPerUser and RoomOpsBurst bound the room changes of one user:
	// create, join and leave room, mark read. Defaults 5/s, burst 30 (a
	// page marking several rooms read at once).
	RoomOpsPerUser float64
	RoomOpsBurst   int
	// TypingPerUser and TypingBurst bound one user's typing notices
	// across all rooms, so that a member of many rooms cannot multiply
	// the one notice every 2 seconds that each room takes. Defaults 2/s,
	// burst 6.
	TypingPerUser float64
	TypingBurst   int
	// ConnsPerIP bounds concurrent connections from one address. Default
	// 1000.
	ConnsPerIP int
	// TrustedProxies are the peers whose X-Forwarded-For is believed
	// (nginx). Default loopback only. A peer at this machine's own
	// address (nginx on the same host proxying to its public address) is
	// trusted too.
	TrustedProxies []netip.Prefix
	// AuthPerProxy and AuthBurstPerProxy bound login and register
	// attempts of all the clients that reach the server through one
	// trusted proxy that names none of them (no X-Forwarded-For, as the
	// report's nginx block). Such clients cannot be told apart, so the
	// per-address limits do not apply to them: this budget, the per-user
	// limits and the bcrypt slots do. Defaults 20/s, burst 600: hundreds
	// of different people logging in within a minute pass, a flood from
	// behind the proxy is held back.
	AuthPerProxy      float64
	AuthBurstPerProxy int
	// AllowedOrigins, when set, is an allow-list of browser origins
	// (scheme://host[:port]): pages of other sites are refused, the
	// server's own pages always pass, and "*" allows any. Empty (the
	// default) allows every origin, as Node's socket.io does: see
	// guard.originAllowed for why that is safe here.
	AllowedOrigins []string
}

func (l *Limits) setDefaults() {
	rateDefault(&l.AuthPerIP, &l.AuthBurstPerIP, 5, 500)
	rateDefault(&l.AuthPerProxy, &l.AuthBurstPerProxy, 20, 600)
	rateDefault(&l.LoginPerUser, &l.LoginBurstPerUser, 0.2, 10)
	rateDefault(&l.MessagesPerUser, &l.MessageBurst, 10, 30)
	rateDefault(&l.PagesPerSocket, &l.PageBurst, 2, 10)
	rateDefault(&l.RoomOpsPerUser, &l.RoomOpsBurst, 5, 30)
	rateDefault(&l.TypingPerUser, &l.TypingBurst, 2, 6)
	switch {
	case l.ConnsPerIP == 0:
		l.ConnsPerIP = 1000
	case l.ConnsPerIP < 0:
		l.ConnsPerIP = 0
	}
	if l.TrustedProxies == nil {
		l.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
}

func rateDefault(r *float64, burst *int, defRate float64, defBurst int) {
	switch {
	case *r == 0:
		*r = defRate
		if *burst == 0 {
			*burst = defBurst
		}
	case *r < 0:
		*r = 0
	case *burst <= 0:
		*burst = 1
	}
}

// guard applies Limits. Its limiters are keyed by client address or by
// username and bound their own memory.
type guard struct {
	cfg       Limits
	authIP    *limit.Limiter
	authProxy *limit.Limiter // keyed by the proxy's address
	authUser  *limit.Limiter
	msgs      *limit.Limiter
	roomOps   *limit.Limiter
	conns     *limit.ConnCounter

	// unforwarded counts connections from trusted proxies that named no
	// client; unforwardedSeen remembers which proxies were logged, so
	// each is logged once.
	unforwarded     prometheus.Counter
	unforwardedSeen sync.Map // proxy address (string) -> struct{}
}

const maxLimiterKeys = 100_000

func newGuard(cfg Limits) *guard {
	g := &guard{cfg: cfg}
	if cfg.AuthPerIP > 0 {
		g.authIP = limit.NewLimiter(cfg.AuthPerIP, cfg.AuthBurstPerIP, maxLimiterKeys)
	}
	if cfg.AuthPerProxy > 0 {
		g.authProxy = limit.NewLimiter(cfg.AuthPerProxy, cfg.AuthBurstPerProxy, maxLimiterKeys)
	}
	g.unforwarded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "chat_unforwarded_connections_total",
		Help: "Connections from a trusted proxy that sent no X-Forwarded-For: per-address limits cannot apply to them.",
	})
	if cfg.LoginPerUser > 0 {
		g.authUser = limit.NewLimiter(cfg.LoginPerUser, cfg.LoginBurstPerUser, maxLimiterKeys)
	}
	if cfg.MessagesPerUser > 0 {
		g.msgs = limit.NewLimiter(cfg.MessagesPerUser, cfg.MessageBurst, maxLimiterKeys)
	}
	if cfg.RoomOpsPerUser > 0 {
		g.roomOps = limit.NewLimiter(cfg.RoomOpsPerUser, cfg.RoomOpsBurst, maxLimiterKeys)
	}
	if cfg.ConnsPerIP > 0 {
		g.conns = limit.NewConnCounter(cfg.ConnsPerIP)
	}
	return g
}

func allow(l *limit.Limiter, key string) bool { return l == nil || l.Allow(key) }

// pageLimiter is one socket's allowance of history pages; nil when the
// limit is off. It lives and dies with the socket, so it needs no map.
func (g *guard) pageLimiter() *rate.Limiter {
	if g.cfg.PagesPerSocket <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(g.cfg.PagesPerSocket), g.cfg.PageBurst)
}

// peer is where a connection comes from, as the limits see it.
type peer struct {
	// key is the limiter key of the client's address or, when unnamed,
	// of the proxy's.
	key string
	// unnamed: a trusted proxy sent the request and named no client, so
	// every client behind that proxy has this same key.
	unnamed bool
}

// peerOf tells who is behind r. A peer at the connection's own local
// address is this machine (nginx proxying to the host's public address,
// as the report's block does with <your_IP_address>) and is trusted like
// the configured proxies.
func (g *guard) peerOf(r *http.Request) peer {
	trusted := g.cfg.TrustedProxies
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			a := ap.Addr().Unmap()
			trusted = append(slices.Clip(trusted), netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return peer{
		key:     limit.AddrKey(limit.ClientIP(r, trusted)),
		unnamed: limit.Unforwarded(r, trusted),
	}
}

// noteUnnamed counts a connection from a proxy that names no client, and
// logs each such proxy once: the operator should know that per-address
// limits are off for everyone behind it, and how to get them back.
func (g *guard) noteUnnamed(log *slog.Logger, p peer) {
	g.unforwarded.Inc()
	if _, seen := g.unforwardedSeen.LoadOrStore(p.key, struct{}{}); seen {
		return
	}
	log.Warn("clients arrive through a proxy that sends no X-Forwarded-For: per-address limits are off for them; "+
		"per-user limits and the proxy's login budget apply (add `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;` "+
		"to nginx, as our nginx.conf does, to get per-address limits back)",
		"proxy", p.key, "login_budget_per_s", g.cfg.AuthPerProxy, "login_burst", g.cfg.AuthBurstPerProxy)
}

// allowAuth spends one login or register attempt of p: from its own
// address's allowance or, for clients behind a proxy that names none, from
// that proxy's shared budget.
func (g *guard) allowAuth(p peer) bool {
	if p.unnamed {
		return allow(g.authProxy, p.key)
	}
	return allow(g.authIP, p.key)
}

// capConns reports whether p's connections are counted against
// ConnsPerIP: not when p is unnamed, since that one address is then the
// whole site.
func (g *guard) capConns(p peer) bool { return g.conns != nil && !p.unnamed }

// originAllowed reports whether a browser page at origin may use the
// server reached as host.
//
// With no allow-list every origin may, as with Node's socket.io. The check
// would protect ambient credentials, and there are none: no cookie, no
// HTTP authentication; the session token lives in the page's own storage,
// which another site's page cannot read. Such a page can open a socket as
// any program can, anonymous until it logs in with a password it knows,
// and the per-user and per-address limits apply to it. Refusing by
// default broke the drop-in promise: behind the report's nginx block the
// server sees Host "backend" and refused its own page.
//
// With an allow-list, the listed origins pass, and so does the server's
// own page whatever Host the proxy passes: its Origin names the Host, or
// the browser says the request is same-origin (Sec-Fetch-Site, which no
// page's script can set). Without an Origin header the client is not a
// browser page and may.
func (g *guard) originAllowed(origin, host, fetchSite string) bool {
	if origin == "" || len(g.cfg.AllowedOrigins) == 0 || fetchSite == "same-origin" {
		return true
	}
	if slices.Contains(g.cfg.AllowedOrigins, "*") || slices.Contains(g.cfg.AllowedOrigins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, host) {
		return true
	}
	// nginx passes Host without its port ($host): then compare names.
	if _, _, err := net.SplitHostPort(host); err != nil {
		return strings.EqualFold(u.Hostname(), host)
	}
	return false
}

// checkOrigin refuses Socket.IO requests from pages of sites outside the
// allow-list, when there is one (see originAllowed). WebSocket upgrades are
// not subject to CORS in browsers, so this check is the only barrier.
func (g *guard) checkOrigin(next http.Handler, onRefuse func(origin string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); !g.originAllowed(origin, r.Host, r.Header.Get("Sec-Fetch-Site")) {
			onRefuse(origin)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"code":4,"message":"Forbidden: origin not allowed"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authLimitName is the limit label of an auth refusal for p, in metrics
// and logs.
func authLimitName(p peer) string {
	if p.unnamed {
		return "auth_per_proxy"
	}
	return "auth_per_ip"
}
