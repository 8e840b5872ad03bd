// Package sioclient is a small Socket.IO v5 client over Engine.IO v4, for
// this project's tests: over a WebSocket (the default), or over HTTP
// long-polling (Options.Transport "polling"), which is what every browser
// gets behind a proxy that does not forward the WebSocket upgrade.
//
// It exists because the tests need a client that is predictable: they count
// goroutines and must know that Close ends every one of them (WebSocket), and
// the Go client module cannot emit over long-polling. The npm
// socket.io-client, the one users have, is exercised separately in
// test/compat.
//
// It speaks the default namespace only, text packets only, never upgrades
// from polling to WebSocket, and never reconnects.
package sioclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures Dial.
type Options struct {
	// Auth is sent as the handshake's auth payload.
	Auth map[string]any
	// Header is added to the WebSocket upgrade request, or to every HTTP
	// request of the polling transport.
	Header http.Header
	// OnEvent is called for each event from the server, in order, on the
	// connection's reader goroutine; it must not block for long. It is
	// set before the connection opens, so no event is missed.
	OnEvent func(name string, args []any)
	// OnClose is called once when the connection ends, with the reason.
	OnClose func(err error)
	// LocalAddr, when set, is the local IP address to connect from (e.g.
	// 127.0.0.2), so that tests can look like many clients to a proxy that
	// hashes client addresses.
	LocalAddr string
	// Transport is "websocket" (the default when empty) or "polling".
	Transport string
	// RequestTimeout bounds each HTTP request of the polling transport,
	// from the moment it is sent. Zero means no bound: like a browser's
	// XHR, a request then lasts until the server or a proxy answers it.
	//
	// Polling requests are never cancelled by the client otherwise: when
	// Dial's context ends, when the server falls silent, or on Close, the
	// connection ends at once but a request already sent stays open until
	// it is answered (or RequestTimeout), as engine.io-client's requests
	// do. This matters behind a proxy: nginx counts a failure of an
	// upstream server (and moves on to the backup) only when a request to
	// it errs or times out, never when the client gives up first.
	RequestTimeout time.Duration
}

// Conn is one Socket.IO connection. Its methods are safe for concurrent use.
// Close ends its reader goroutine.
type Conn struct {
	tr   transport
	opts Options
	// SID is the Socket.IO session id the server assigned.
	SID string

	mu      sync.Mutex
	nextAck uint64
	acks    map[uint64]chan []any
	err     error // why the connection ended; nil while open
	closing bool  // Close was called: however it ends now, Err is ErrClosed

	done chan struct{}

	// silence is how long the server may stay quiet before the connection
	// counts as dead: its pingInterval + pingTimeout, as socket.io-client
	// does, so a hung server is noticed.
	silence time.Duration
}

// transport carries Engine.IO packets, as strings, in both directions.
type transport interface {
	// read returns the next packet from the server, failing if none comes
	// before deadline (zero: no deadline).
	read(deadline time.Time) (string, error)
	// write sends one packet to the server.
	write(pkt string) error
	// close ends the transport: a read in progress returns.
	close()
}

// ErrClosed is returned by calls on a connection that has ended.
var ErrClosed = errors.New("sioclient: connection closed")

// Dial connects to the Socket.IO server at base (http://host:port) and
// completes the Engine.IO and Socket.IO handshakes.
func Dial(ctx context.Context, base string, opts Options) (*Conn, error) {
	c := &Conn{opts: opts, acks: map[uint64]chan []any{}, done: make(chan struct{})}
	var err error
	switch opts.Transport {
	case "", "websocket":
		c.tr, err = dialWebSocket(ctx, base, opts)
	case "polling":
		c.tr, err = dialPolling(ctx, base, opts)
	default:
		return nil, fmt.Errorf("sioclient: unknown transport %q", opts.Transport)
	}
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	if err := c.handshake(ctx, deadline); err != nil {
		c.tr.close()
		return nil, err
	}
	go c.read()
	return c, nil
}

func (c *Conn) handshake(ctx context.Context, deadline time.Time) error {
	open, err := c.tr.read(deadline)
	if err != nil {
		return fmt.Errorf("sioclient: engine.io open: %w", err)
	}
	if len(open) == 0 || open[0] != '0' {
		return fmt.Errorf("sioclient: expected an engine.io open packet, got %.40q", open)
	}
	var hs struct {
		PingInterval, PingTimeout int64
	}
	if err := json.Unmarshal([]byte(open[1:]), &hs); err == nil && hs.PingInterval > 0 {
		c.silence = time.Duration(hs.PingInterval+hs.PingTimeout) * time.Millisecond
	}
	connect := "40"
	if c.opts.Auth != nil {
		b, err := json.Marshal(c.opts.Auth)
		if err != nil {
			return err
		}
		connect += string(b)
	}
	if err := c.tr.write(connect); err != nil {
		return err
	}
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("sioclient: socket.io connect: %w", ctx.Err())
		}
		s, err := c.tr.read(deadline)
		if err != nil {
			return fmt.Errorf("sioclient: socket.io connect: %w", err)
		}
		switch {
		case s == "2":
			if err := c.tr.write("3"); err != nil {
				return err
			}
		case s == "6": // noop (polling)
		case strings.HasPrefix(s, "40"):
			var ok struct{ SID string }
			json.Unmarshal([]byte(s[2:]), &ok)
			c.SID = ok.SID
			return nil
		case strings.HasPrefix(s, "44"):
			return fmt.Errorf("sioclient: connection refused: %s", s[2:])
		default:
			return fmt.Errorf("sioclient: unexpected packet during connect: %.40q", s)
		}
	}
}

func (c *Conn) write(s string) error { return c.tr.write(s) }

// Emit sends an event without asking for an acknowledgement.
func (c *Conn) Emit(event string, args ...any) error {
	b, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return err
	}
	return c.write("42" + string(b))
}

// Call sends an event, asks for an acknowledgement, and returns its
// arguments. It fails when ctx ends or the connection does first.
func (c *Conn) Call(ctx context.Context, event string, args ...any) ([]any, error) {
	b, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return nil, err
	}
	ch := make(chan []any, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	id := c.nextAck
	c.nextAck++
	c.acks[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.acks, id)
		c.mu.Unlock()
	}()
	if err := c.write("42" + strconv.FormatUint(id, 10) + string(b)); err != nil {
		return nil, err
	}
	select {
	case a := <-ch:
		return a, nil
	case <-c.done:
		return nil, c.Err()
	case <-ctx.Done():
		return nil, fmt.Errorf("sioclient: %s: no acknowledgement: %w", event, ctx.Err())
	}
}

// Err returns why the connection ended, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close sends a Socket.IO disconnect and closes the connection. It waits for
// the reader goroutine to end. (Over polling, a request already sent may
// outlive it: see Options.RequestTimeout.)
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	// The server may answer the DISCONNECT by closing the session before
	// the transport is closed here: that end is still ours (ErrClosed).
	c.write("41")
	c.tr.close()
	<-c.done
	return nil
}

func (c *Conn) read() {
	var err error
	defer func() {
		c.mu.Lock()
		if err == nil || c.closing {
			err = ErrClosed
		}
		c.err = err
		c.mu.Unlock()
		c.tr.close()
		close(c.done)
		if c.opts.OnClose != nil {
			c.opts.OnClose(err)
		}
	}()
	for {
		var deadline time.Time
		if c.silence > 0 {
			deadline = time.Now().Add(c.silence)
		}
		var msg string
		msg, err = c.tr.read(deadline)
		if err != nil {
			return
		}
		if err = c.handle(msg); err != nil {
			return
		}
	}
}

func (c *Conn) handle(s string) error {
	switch {
	case s == "2": // ping
		return c.write("3")
	case s == "1": // engine.io close
		return errors.New("sioclient: server closed the session")
	case strings.HasPrefix(s, "41"):
		return errors.New("sioclient: server disconnected the socket")
	case strings.HasPrefix(s, "42"):
		var args []any
		if err := json.Unmarshal([]byte(skipID(s[2:])), &args); err != nil || len(args) == 0 {
			return fmt.Errorf("sioclient: bad event packet %.60q", s)
		}
		name, _ := args[0].(string)
		if c.opts.OnEvent != nil {
			c.opts.OnEvent(name, args[1:])
		}
	case strings.HasPrefix(s, "43"):
		rest := s[2:]
		n := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		id, err := strconv.ParseUint(rest[:n], 10, 64)
		if err != nil {
			return fmt.Errorf("sioclient: bad ack packet %.60q", s)
		}
		var args []any
		if err := json.Unmarshal([]byte(rest[n:]), &args); err != nil {
			return fmt.Errorf("sioclient: bad ack packet %.60q", s)
		}
		c.mu.Lock()
		ch := c.acks[id]
		c.mu.Unlock()
		if ch != nil {
			ch <- args
		}
	}
	return nil
}

// skipID drops the ack id an event packet may carry before its JSON.
func skipID(s string) string {
	return strings.TrimLeft(s, "0123456789")
}
