package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// setupAckBase: acknowledgement ids at or above it belong to register and
// login; below it, an id is the sequence number of a message.
const setupAckBase = 1 << 40

var (
	pfxNewMessage = []byte(`42["new message",`)
	pfxHistory    = []byte(`42["load all messages"`)
	pfxReload     = []byte(`42["reload"`)
	successTrue   = []byte(`"success":true`)
)

// client is one Socket.IO connection of the run, over WebSocket or
// long-polling. Its reader goroutine owns seen and the read buffer.
type client struct {
	r       *run
	idx     int
	t       *srvTarget // the server it connects to
	sender  bool
	polling bool // starts on HTTP long-polling (transport polling or upgrade)
	upgrade bool // then tries the Engine.IO upgrade to WebSocket

	life       sync.Mutex // orders onDead against connectOne's registration
	registered bool       // guarded by life: counted as connected
	deathErr   error      // guarded by life: why it ended before registration

	seen      []uint64     // bitmap of sequence numbers received
	delivered atomic.Int64 // new messages of this run received, duplicates excluded
	ready     atomic.Bool  // `load all messages` received
	dead      atomic.Bool

	connectedAt time.Time

	// WebSocket, once handed to an event loop (ws.go, evloop.go)
	fd       int
	wmu      sync.Mutex
	closed   bool         // guarded by wmu: fd is closed (and may be reused)
	wbuf     []byte       // guarded by wmu
	pend     []byte       // owned by the loop: the start of a frame not yet complete
	frag     []byte       // owned by the loop: a fragmented message
	lastRead int64        // owned by the loop: r.now() of the last read
	lastPing atomic.Int64 // r.now() of the last ping
	pings    atomic.Int64 // pings answered

	// long-polling (transport.go)
	poll     *poller
	omu      sync.Mutex
	onWS     bool     // guarded by omu: upgraded; packets go to the WebSocket
	pausing  bool     // guarded by omu: 3probe received, packets held until the upgrade
	posting  bool     // guarded by omu: a POST is in flight; its poster drains outq
	outq     [][]byte // guarded by omu: packets waiting for a POST (or the upgrade)
	outAt    []int64  // guarded by omu: r.now() when each was queued
	connCh   chan struct{}
	connOnce sync.Once
	connAt   time.Time     // when CONNECT was answered (polling-first clients)
	getDone  chan struct{} // closed when the GET loop has returned
	getErr   error         // set before getDone is closed
	openedAt time.Time     // polling: when the Engine.IO open started

	// silence is the server's pingInterval + pingTimeout: a connection
	// that hears nothing for that long (plus slack) is dead.
	silence time.Duration

	setupAck chan []byte // acks of register and login (senders)
	nextAck  int64
}

// handshakeInfo is the Engine.IO open packet.
type handshakeInfo struct {
	SID          string `json:"sid"`
	PingInterval int64  `json:"pingInterval"`
	PingTimeout  int64  `json:"pingTimeout"`
	// Upgrades lists the transports the server offers to upgrade to.
	Upgrades json.RawMessage `json:"upgrades"`
}

func (c *client) setSilence(open []byte) (handshakeInfo, error) {
	var hs handshakeInfo
	if len(open) < 2 || open[0] != '0' {
		return hs, fmt.Errorf("expected an Engine.IO open packet, got %.60q", open)
	}
	if err := json.Unmarshal(open[1:], &hs); err != nil {
		return hs, fmt.Errorf("bad Engine.IO open packet: %w", err)
	}
	c.r.pingOnce.Do(func() { c.r.pingInterval, c.r.pingTimeout = hs.PingInterval, hs.PingTimeout })
	c.silence = time.Duration(hs.PingInterval+hs.PingTimeout)*time.Millisecond + 5*time.Second
	if hs.PingInterval <= 0 {
		c.silence = time.Minute
	}
	return hs, nil
}

func (c *client) xff() string {
	i := c.idx + 1
	return fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
}

// srvTarget is one server of the run (one -url).
type srvTarget struct {
	idx      int    // position in -url
	url      string // as given
	hostport string // to dial; localhost pinned to 127.0.0.1
	v4       bool
	pollURL  string
}

// targetOf is the server of client number i: round-robin over -url, so
// that senders (the first clients) are spread too.
func (r *run) targetOf(i int) *srvTarget {
	return r.targets[i%len(r.targets)]
}

// dialContext dials addr, which must be one of the run's servers (checked
// loopback by Validate), from the next source address when several are
// used. IP_BIND_ADDRESS_NO_PORT lets the kernel pick the port at connect
// time, unique per 4-tuple rather than per bound address.
func (r *run) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var t *srvTarget
	for _, x := range r.targets {
		if x.hostport == addr {
			t = x
			break
		}
	}
	if t == nil {
		return nil, fmt.Errorf("loadgen: refusing to dial %s: not one of the -url servers", addr)
	}
	d := net.Dialer{Timeout: 20 * time.Second}
	if r.cfg.SourceIPs > 1 && t.v4 {
		n := r.srcNext.Add(1)
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+n%uint64(r.cfg.SourceIPs)))}
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, 24 /* IP_BIND_ADDRESS_NO_PORT */, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return d.DialContext(ctx, "tcp", t.hostport)
}

// ---- both transports ----

var pong = []byte("3")

// handle processes one Engine.IO packet; it returns a packet to send back
// (the pong) or an error that ends the connection.
func (c *client) handle(p []byte) ([]byte, error) {
	if len(p) == 0 {
		return nil, nil
	}
	switch p[0] {
	case '2': // ping
		c.lastPing.Store(c.r.now())
		c.pings.Add(1)
		return pong, nil
	case '1':
		return nil, errors.New("server closed the Engine.IO session")
	case '6', '3':
		return nil, nil
	case '4':
	default:
		return nil, nil
	}
	if len(p) < 2 {
		return nil, nil
	}
	switch p[1] {
	case '2':
		switch {
		case bytes.HasPrefix(p, pfxNewMessage):
			c.r.onMessage(c, p)
		case bytes.HasPrefix(p, pfxHistory):
			if !c.ready.Swap(true) {
				c.r.ready.Add(1)
			}
		case bytes.HasPrefix(p, pfxReload):
			c.r.reloads.Add(1)
		}
	case '3':
		c.onAck(p)
	case '0':
		c.onConnect()
	case '1':
		return nil, errors.New("server disconnected the socket")
	case '4':
		return nil, fmt.Errorf("connect error: %.100s", p[2:])
	}
	return nil, nil
}

func (c *client) onAck(p []byte) {
	rest := p[2:]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	id, err := strconv.ParseInt(string(rest[:n]), 10, 64)
	if err != nil {
		return
	}
	if id >= setupAckBase {
		if c.setupAck != nil {
			select {
			case c.setupAck <- bytes.Clone(rest[n:]):
			default:
			}
		}
		return
	}
	c.r.onSendAck(id, rest[n:])
}

// call emits event with a JSON payload and waits for its acknowledgement
// (register and login of senders).
func (c *client) call(ctx context.Context, event string, payload any) ([]byte, error) {
	b, err := json.Marshal([]any{event, payload})
	if err != nil {
		return nil, err
	}
	c.nextAck++
	frame := "42" + strconv.FormatInt(setupAckBase+c.nextAck, 10) + string(b)
	if err := c.send([]byte(frame)); err != nil {
		return nil, err
	}
	select {
	case a := <-c.setupAck:
		return a, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: no acknowledgement: %w", event, ctx.Err())
	}
}
