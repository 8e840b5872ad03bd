package server

import (
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus instruments, registered on their own
// registry so that two servers in one test process do not collide.
type metrics struct {
	reg *prometheus.Registry

	stored      prometheus.Counter
	delivered   prometheus.Counter
	ackLatency  prometheus.Histogram
	rejections  *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
	busLag      prometheus.Histogram
	logins      *prometheus.CounterVec
	// refused counts conversation requests answered with a refusal
	// other than a rate limit, by event.
	refused *prometheus.CounterVec
	// engineCloses counts sessions that ended other than by their
	// client leaving, and failed upgrade probes (see watchEngine).
	engineCloses *prometheus.CounterVec
}

// The label values of chat_rate_limited_total{limit}, chat_store_errors_total{op}
// and chat_logins_total{outcome}: every value a WithLabelValues call in this
// package passes.
var (
	rejectionLimits = []string{"connections_per_ip", "auth_per_ip", "auth_per_proxy", "login_per_user",
		"messages_per_user", "pages_per_socket", "slow_peer", "origin", "protocol",
		"room_ops_per_user", "typing_per_room"}
	storeErrorOps = []string{"history", "register", "login", "send", "older", "relay", "rooms"}
	// conversationEvents label chat_refused_total{event}: the events
	// whose bad input (unknown rooms, others' messages, wrong shapes) is
	// counted there.
	conversationEvents = []string{"list rooms", "create room", "join room", "leave room", "send room message",
		"send direct message", "room history", "edit message", "delete message", "typing", "search", "mark read"}
	loginOutcomes = []string{"ok", "failed"}
	// engineCloseReasons are the engine close reasons worth an alert,
	// and failed WebSocket upgrades ("upgrade refused", see upgradeRefused).
	engineCloseReasons = []string{"ping timeout", "transport error", "parse error", "upgrade refused"}
)

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_messages_stored_total", Help: "Messages committed to the store by this server.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_messages_delivered_total", Help: "Events handed to sockets of this server: `new message` and `room message` (each to its recipients only), and the edits, typing notices and room-list changes that share their path.",
		}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chat_send_ack_seconds",
			Help:    "Time from receiving `send message` to acknowledging it (store commit included).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_rate_limited_total", Help: "Requests refused by an abuse limit, by limit.",
		}, []string{"limit"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_store_errors_total", Help: "Store operations that failed, by operation.",
		}, []string{"op"}),
		busLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "chat_bus_lag_seconds",
			Help: "Time from another server publishing an event to this server receiving it.",
			// Up to 30 s: a saturated bus falls seconds behind, and that is
			// what an operator must be able to see.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_logins_total", Help: "Login attempts by outcome.",
		}, []string{"outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_refused_total",
			Help: "Conversation requests refused for bad input or a room or message the caller may not use, by event.",
		}, []string{"event"}),
		engineCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_engine_closes_total",
			Help: "Connections that ended other than by their client leaving (ping timeout, transport error...), and failed upgrade probes, by reason.",
		}, []string{"reason"}),
	}
	// Every label value the code can produce starts at zero, so a fresh
	// /metrics already has each series: dashboards show 0 rather than "no
	// data", and an alert on rate(...) > 0 works from the first event
	// instead of from the second. TestMetricsPresentFromStart keeps these
	// lists in step with the WithLabelValues calls in this package.
	for _, l := range rejectionLimits {
		m.rejections.WithLabelValues(l)
	}
	for _, op := range storeErrorOps {
		m.storeErrors.WithLabelValues(op)
	}
	for _, o := range loginOutcomes {
		m.logins.WithLabelValues(o)
	}
	for _, r := range engineCloseReasons {
		m.engineCloses.WithLabelValues(r)
	}
	for _, ev := range conversationEvents {
		m.refused.WithLabelValues(ev)
	}
	m.reg.MustRegister(m.refused, m.stored, m.delivered, m.ackLatency, m.rejections, m.storeErrors, m.busLag, m.logins, m.engineCloses,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "chat_connected_sockets", Help: "Sockets connected to this server.",
		}, func() float64 { return float64(s.hub.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "chat_logged_in_users", Help: "Distinct users logged in on this server.",
		}, func() float64 { return float64(len(s.online.list())) }),
		// The Go defaults, plus the live heap as of the last collection
		// (go_gc_heap_live_bytes): what the memory per connection is
		// measured by, without the garbage go_memstats_heap_alloc_bytes
		// also counts.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}),
	)
	return m
}
