package server

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/chatd/chat/server/limit"
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
	// ConnsPerIP bounds concurrent connections from one address. Default
	// 1000.
	ConnsPerIP int
	// TrustedProxies are the peers whose X-Forwarded-For is believed
	// (nginx). Default loopback only.
	TrustedProxies []netip.Prefix
	// AllowedOrigins are the browser origins (scheme://host[:port]) that
	// may connect besides the server's own; "*" allows any. Requests
	// without an Origin header (non-browser clients) are always allowed.
	AllowedOrigins []string
}

func (l *Limits) setDefaults() {
	rateDefault(&l.AuthPerIP, &l.AuthBurstPerIP, 5, 500)
	rateDefault(&l.LoginPerUser, &l.LoginBurstPerUser, 0.2, 10)
	rateDefault(&l.MessagesPerUser, &l.MessageBurst, 10, 30)
	rateDefault(&l.PagesPerSocket, &l.PageBurst, 2, 10)
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
	cfg      Limits
	authIP   *limit.Limiter
	authUser *limit.Limiter
	msgs     *limit.Limiter
	conns    *limit.ConnCounter
}

const maxLimiterKeys = 100_000

func newGuard(cfg Limits) *guard {
	g := &guard{cfg: cfg}
	if cfg.AuthPerIP > 0 {
		g.authIP = limit.NewLimiter(cfg.AuthPerIP, cfg.AuthBurstPerIP, maxLimiterKeys)
	}
	if cfg.LoginPerUser > 0 {
		g.authUser = limit.NewLimiter(cfg.LoginPerUser, cfg.LoginBurstPerUser, maxLimiterKeys)
	}
	if cfg.MessagesPerUser > 0 {
		g.msgs = limit.NewLimiter(cfg.MessagesPerUser, cfg.MessageBurst, maxLimiterKeys)
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

// clientKey is the limiter key of the client behind r.
func (g *guard) clientKey(r *http.Request) string {
	return limit.AddrKey(limit.ClientIP(r, g.cfg.TrustedProxies))
}

// originAllowed reports whether a browser page at origin may use the
// server reached as host: its own origin, or one configured. Without an
// Origin header the client is not a browser page and may.
func (g *guard) originAllowed(origin, host string) bool {
	if origin == "" {
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

// checkOrigin refuses Socket.IO requests from other sites' pages: a page
// elsewhere must not chat in its visitor's name. WebSocket upgrades are not
// subject to CORS in browsers, so this check is the only barrier.
func (g *guard) checkOrigin(next http.Handler, onRefuse func(origin string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); !g.originAllowed(origin, r.Host) {
			onRefuse(origin)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"code":4,"message":"Forbidden: origin not allowed"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}
