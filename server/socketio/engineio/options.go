package engineio

import (
	"net/http"
	"time"
)

// Options configure a Server. The zero value is usable: every zero field
// takes the default named in its comment.
type Options struct {
	// PingInterval and PingTimeout: with EIO4 the server pings every
	// PingInterval and closes a session whose pong has not come PingTimeout
	// later; with EIO3 the client pings and the server closes a session that
	// sent no ping for PingInterval+PingTimeout. Defaults 25 s and 20 s.
	PingInterval, PingTimeout time.Duration
	// MaxPayload bounds one polling POST body or one WebSocket message, in
	// bytes; 0 means 1 MB. A larger POST is answered 413, a larger
	// WebSocket message closes the session.
	MaxPayload int64
	// AllowEIO3 accepts EIO=3 clients (socket.io-client 2.x).
	AllowEIO3 bool
	// DisableUpgrades keeps every session on long-polling: the handshake
	// offers no upgrade and WebSocket upgrade requests of a polling session
	// are refused. (A field that disables, so that the zero value upgrades.)
	DisableUpgrades bool
	// MaxQueued bounds the bytes waiting for one WebSocket peer; a peer
	// that lets more pile up is cut off (OnSlowPeer). 0 means 1 MiB.
	MaxQueued int
	// WriteTimeout cuts off a WebSocket peer that has taken no byte of
	// pending data for this long (OnSlowPeer). 0 means 10 s.
	WriteTimeout time.Duration
	// PollTimeout bounds how long a POST body may take to arrive and how
	// long a poll response may take to be written. 0 means 10 s.
	PollTimeout time.Duration
	// PollBatch is the least time between two answers to a long-polling
	// session's polls while packets keep coming: what is queued meanwhile
	// goes in the next answer, so a busy room costs a polling client one
	// HTTP request per PollBatch, not one per message (behind a proxy
	// that opens a connection per request, as the seed report's block
	// does, the request is most of the cost). A poll that finds the
	// session quiet for longer is answered at once, so a lone message is
	// never held, and neither is a ping. 0 means 250 ms: half the
	// requests of 50 ms behind the report's block at 1,000 clients x 20
	// msg/s (Go's CPU per delivery 0.67x Node's there, against 0.94x with
	// 50 ms; loadtest/RESULTS.md), for at most a quarter of a second more
	// on a message in a busy room, which a person does not notice.
	// Negative, no batching.
	PollBatch time.Duration

	// Accept is called once per handshake with the request, before a
	// session exists. An error refuses the handshake: 403 with
	// {"code":4,"message":err.Error()}. The request is not kept afterwards:
	// Accept copies what the caller needs into data, which Session.Data
	// gives back. Nil accepts every handshake with nil data.
	Accept func(r *http.Request) (data any, err error)
	// OnOpen is called once per new session, before any message of it is
	// delivered; it is where Session.SetHandler belongs.
	OnOpen func(s *Session)

	// OnClose, if set, is called once per session after its handler's
	// OnClose, for logging and metrics.
	OnClose func(s *Session, reason string)
	// OnUpgradeRefused, if set, is called when a WebSocket upgrade of a
	// session is refused or its probe fails, with the reason.
	OnUpgradeRefused func(s *Session, reason string)
	// OnSlowPeer, if set, is called when a WebSocket peer is cut off for
	// exceeding MaxQueued or WriteTimeout (before the session's OnClose).
	OnSlowPeer func(s *Session)
}

const (
	defaultPingInterval = 25 * time.Second
	defaultPingTimeout  = 20 * time.Second
	defaultMaxPayload   = 1_000_000
	defaultMaxQueued    = 1 << 20
	defaultWriteTimeout = 10 * time.Second
	defaultPollTimeout  = 10 * time.Second
	defaultPollBatch    = 250 * time.Millisecond
)

func (o *Options) setDefaults() {
	if o.PingInterval <= 0 {
		o.PingInterval = defaultPingInterval
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = defaultPingTimeout
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = defaultMaxPayload
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = defaultMaxQueued
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = defaultPollTimeout
	}
	switch {
	case o.PollBatch == 0:
		o.PollBatch = defaultPollBatch
	case o.PollBatch < 0:
		o.PollBatch = 0
	}
}
