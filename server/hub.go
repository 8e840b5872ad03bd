package server

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/zishang520/socket.io/parsers/socket/v3/parser"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"

	"github.com/chatd/chat/server/wstransport"
	"github.com/chatd/chat/store"
)

// maxPending bounds the messages held for a socket that is still receiving
// its history. A socket that falls this far behind is disconnected (and
// reloads history when it reconnects) instead of growing without bound.
const maxPending = 1024

// hub is the set of connected sockets and the delivery of `new message` to
// them. It is the one owner of that set.
//
// A socket joins the hub the moment it connects but receives live messages
// only after its history: messages committed while its history was being
// read are held, then sent if the history did not already include them. So
// a newcomer sees every message exactly once, with no gap between history
// and live traffic, and `load all messages` stays its first event.
type hub struct {
	// onDeliver counts deliveries (metrics); set before use.
	onDeliver func(n int)
	// encode turns a `new message` payload into its wire packets, once
	// per message rather than once per recipient; set before use.
	encode func(payload any) encoded

	mu sync.RWMutex
	// clients is guarded by mu.
	clients map[*client]struct{}
}

// client is one connected socket as the hub sees it.
type client struct {
	send func(event string, args ...any)
	// sendEncoded writes a message already encoded by hub.encode. Like
	// send, it only queues it on the connection: it does not block on the
	// network.
	sendEncoded func(e encoded)
	close       func(reason string)

	mu sync.Mutex
	// Fields below are guarded by mu.
	live    bool            // history sent; deliver directly
	pending []store.Message // held until live
	gone    bool            // left the hub
}

func newHub() *hub {
	return &hub{clients: map[*client]struct{}{}}
}

// join adds c; it receives nothing until goLive.
func (h *hub) join(c *client) {
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
}

// leave removes c. It is safe to call more than once.
func (h *hub) leave(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
	c.mu.Lock()
	c.gone = true
	c.pending = nil
	c.mu.Unlock()
}

// goLive is called once c's history has been sent: it sends what arrived
// meanwhile that the history did not contain, and switches c to live
// delivery. Ids are allotted before commit, so a message can become visible
// after a higher one: "not in the history" is not "id above the history's
// last", and only the set comparison is exact.
func (c *client) goLive(inHistory map[int64]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = true
	for _, m := range c.pending {
		if !inHistory[m.ID] {
			c.send("new message", wireMsg(m))
		}
	}
	c.pending = nil
}

// deliver sends m (encoded as packets) to c, or holds it while c's history
// is on its way, and reports whether it sent it now.
func (c *client) deliver(m store.Message, e encoded) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.gone:
	case c.live:
		c.sendEncoded(e)
		return true
	case len(c.pending) >= maxPending:
		c.gone = true
		go c.close("too many messages while loading history")
	default:
		c.pending = append(c.pending, m)
	}
	return false
}

// broadcast delivers m to every connected socket, logged in or not.
func (h *hub) broadcast(m store.Message) {
	e := h.encode(wireMsg(m))
	h.mu.RLock()
	clients := make([]*client, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.RUnlock()
	n := deliverAll(clients, m, e)
	if h.onDeliver != nil {
		h.onDeliver(n)
	}
}

// fanoutChunk is the fewest recipients a broadcast hands to a goroutine
// of its own. A delivery is mostly one write(2) (several µs on loopback),
// so a room of thousands takes tens of milliseconds on one core; split
// over the cores it reaches the last recipient proportionally sooner.
const fanoutChunk = 512

// deliverAll delivers to every client, in parallel chunks when there are
// many, and returns how many got it now. It returns once all have been
// handed the message, so consecutive broadcasts from one goroutine reach
// each client in order.
func deliverAll(clients []*client, m store.Message, e encoded) int {
	workers := min(runtime.GOMAXPROCS(0), len(clients)/fanoutChunk)
	if workers <= 1 {
		return deliverEach(clients, m, e)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	for chunk := range slices.Chunk(clients, (len(clients)+workers-1)/workers) {
		wg.Go(func() { n.Add(int64(deliverEach(chunk, m, e))) })
	}
	wg.Wait()
	return int(n.Load())
}

// deliverEach delivers to clients one after the other and returns how many
// got it now.
func deliverEach(clients []*client, m store.Message, e encoded) int {
	n := 0
	for _, c := range clients {
		if c.deliver(m, e) {
			n++
		}
	}
	return n
}

// count returns the number of connected sockets.
func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// encoded is a `new message` event encoded once for every recipient: the
// Socket.IO packets for the library's write path, and, when the event is
// a single text packet, also the WebSocket frame our transport can queue
// as it is (see package wstransport).
type encoded struct {
	packets []types.BufferInterface
	frame   []byte // nil when there is none
}

// encoderFor returns hub.encode for the Socket.IO server io: the same
// encoder the library's own broadcasts use, applied once per message.
func encoderFor(io *socket.Server) func(payload any) encoded {
	enc := io.Encoder()
	return func(payload any) encoded {
		e := encoded{packets: enc.Encode(&parser.Packet{Type: parser.EVENT, Nsp: "/", Data: []any{"new message", payload}})}
		if len(e.packets) == 1 {
			if sb, ok := e.packets[0].(*types.StringBuffer); ok {
				e.frame = wstransport.MessageFrame(sb.Bytes())
			}
		}
		return e
	}
}
