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
// a newcomer sees every message, with no gap between history and live
// traffic, and `load all messages` stays its first event. After that, each
// socket keeps the set of ids it was given (givenIDs) and is never given
// one twice: a bus event or a resend can bring a message to this server
// after a socket's history had it (see givenIDs for why the set, and not
// the highest id, is the test).
type hub struct {
	// onDeliver counts deliveries (metrics); set before use.
	onDeliver func(n int)
	// encode turns a `new message` payload into its wire packets, once
	// per message rather than once per recipient; set before use.
	encode func(payload any) encoded

	mu sync.RWMutex
	// clients is guarded by mu.
	clients map[*client]struct{}

	qmu sync.Mutex
	// Guarded by qmu: broadcasts not yet taken by the flusher, oldest
	// first, and whether a flusher goroutine is running.
	queue    []queued
	flushing bool
}

// queued is one broadcast waiting for the flusher.
type queued struct {
	m    store.Message
	e    encoded
	done chan struct{} // closed once every client has been handed m
}

// client is one connected socket as the hub sees it.
type client struct {
	send func(event string, args ...any)
	// sendEncoded writes a message already encoded by hub.encode. Like
	// send, it only queues it on the connection: it does not block on the
	// network.
	sendEncoded func(e encoded)
	// sendFrames, if set, writes ready WebSocket frames (the frames of
	// several messages back to back) straight to the socket's connection,
	// and reports false when it cannot (the socket is not on our
	// transport from the start), in which case sendEncoded is used.
	sendFrames func(frames []byte) bool
	close      func(reason string)

	mu sync.Mutex
	// Fields below are guarded by mu.
	live    bool            // history sent; deliver directly
	pending []store.Message // held until live
	given   givenIDs        // ids given to the socket: history, live, pages
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
	c.given = givenIDs{}
	c.mu.Unlock()
}

// goLive is called once c's history has been sent: it records the
// history's ids as given, sends what arrived meanwhile that the history did
// not contain, and switches c to live delivery, where every message is
// checked against the same set. Ids are allotted before commit, so a
// message can become visible after a higher one: "not given" is not "id
// above the history's last", and only the set comparison is exact.
func (c *client) goLive(history []store.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = true
	for _, m := range history {
		c.given.add(m.ID)
	}
	for _, m := range c.pending {
		if c.given.add(m.ID) {
			c.send("new message", wireMsg(m))
		}
	}
	c.pending = nil
}

// givePage records the ids of a page of older messages about to be sent
// to c and returns the page without those c was given already (live: a
// resend or a late commit below its history can arrive before the page is
// read). Recorded newest first, so that each extends the set downwards.
func (c *client) givePage(ms []store.Message) []store.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := make([]bool, len(ms))
	n := 0
	for i := len(ms) - 1; i >= 0; i-- {
		if c.given.add(ms[i].ID) {
			keep[i] = true
			n++
		}
	}
	if n == len(ms) {
		return ms
	}
	out := make([]store.Message, 0, n)
	for i, m := range ms {
		if keep[i] {
			out = append(out, m)
		}
	}
	return out
}

// deliver sends b's messages to c, or holds them while c's history is on
// its way, and reports how many it sent now.
func (c *client) deliver(b *batch) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.gone:
	case c.live:
		items := b.items
		frame := b.frame
		for i, o := range b.items {
			if !c.given.add(o.m.ID) {
				// Given already (by the history, mostly): send the
				// others one by one. Rare, so the common pass stays one
				// write of the shared frames.
				items = slices.Clone(b.items[:i])
				for _, o := range b.items[i+1:] {
					if c.given.add(o.m.ID) {
						items = append(items, o)
					}
				}
				frame = nil
				break
			}
		}
		if len(items) == 1 {
			frame = items[0].e.frame
		}
		if frame != nil && c.sendFrames != nil && c.sendFrames(frame) {
			return len(items)
		}
		for _, o := range items {
			c.sendEncoded(o.e)
		}
		return len(items)
	case len(c.pending)+len(b.items) > maxPending:
		c.gone = true
		go c.close("too many messages while loading history")
	default:
		for _, o := range b.items {
			c.pending = append(c.pending, o.m)
		}
	}
	return 0
}

// broadcast delivers m to every connected socket, logged in or not. It
// queues m and returns at once; the returned channel is closed once every
// socket has been handed m (the sender's acknowledgement waits for it, so
// a sender sees its message before the ack).
//
// Why a queue and one flusher instead of writing on the caller's
// goroutine: a delivery is mostly one write(2), and messages that arrive
// while a pass over the sockets is under way go out together in the next
// pass, as one write per socket carrying all of them. The busier the
// room, the more each system call carries, so the cost per delivery
// falls as the load rises instead of saturating the cores; when it is
// quiet a pass carries one message and starts at once. One flusher also
// means every socket sees the messages in the same order.
func (h *hub) broadcast(m store.Message) <-chan struct{} {
	o := queued{m: m, e: h.encode(wireMsg(m)), done: make(chan struct{})}
	h.qmu.Lock()
	h.queue = append(h.queue, o)
	start := !h.flushing
	h.flushing = true
	h.qmu.Unlock()
	if start {
		go h.flush()
	}
	return o.done
}

// maxBatch and maxBatchBytes bound what one pass carries, so that one
// write per socket stays well inside a socket's queue bound
// (wstransport.DefaultMaxQueued) and a pass does not hold back the first
// messages of a long burst.
const (
	maxBatch      = 256
	maxBatchBytes = 64 << 10
)

// flush delivers the queue in passes until it is empty, then ends; the
// next broadcast starts another.
func (h *hub) flush() {
	for {
		h.qmu.Lock()
		n, size := 0, 0
		for n < len(h.queue) && n < maxBatch && (n == 0 || size+len(h.queue[n].e.frame) <= maxBatchBytes) {
			size += len(h.queue[n].e.frame)
			n++
		}
		if n == 0 {
			h.flushing = false
			h.queue = nil
			h.qmu.Unlock()
			return
		}
		batch := h.queue[:n:n]
		h.queue = h.queue[n:]
		h.qmu.Unlock()

		h.mu.RLock()
		clients := make([]*client, 0, len(h.clients))
		for c := range h.clients {
			clients = append(clients, c)
		}
		h.mu.RUnlock()
		b := newBatch(batch)
		delivered := deliverAll(clients, b)
		if h.onDeliver != nil {
			h.onDeliver(delivered)
		}
		for _, o := range batch {
			close(o.done)
		}
	}
}

// batch is one pass of the flusher: its messages, and when every one of
// them has a ready WebSocket frame, all those frames back to back, so a
// socket on our transport gets the whole pass in one write.
type batch struct {
	items []queued
	frame []byte // nil unless every item has a frame
}

func newBatch(items []queued) *batch {
	b := &batch{items: items}
	if len(items) == 1 {
		b.frame = items[0].e.frame
		return b
	}
	size := 0
	for _, o := range items {
		if o.e.frame == nil {
			return b
		}
		size += len(o.e.frame)
	}
	b.frame = make([]byte, 0, size)
	for _, o := range items {
		b.frame = append(b.frame, o.e.frame...)
	}
	return b
}

// fanoutChunk is the fewest recipients a broadcast hands to a goroutine
// of its own. A delivery is mostly one write(2) (several µs on loopback),
// so a room of thousands takes tens of milliseconds on one core; split
// over the cores it reaches the last recipient proportionally sooner.
const fanoutChunk = 512

// deliverAll delivers b to every client, in parallel chunks when there
// are many, and returns the deliveries made now. It returns once all have
// been handed b, so consecutive passes reach each client in order.
func deliverAll(clients []*client, b *batch) int {
	workers := min(runtime.GOMAXPROCS(0), len(clients)/fanoutChunk)
	if workers <= 1 {
		return deliverEach(clients, b)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	for chunk := range slices.Chunk(clients, (len(clients)+workers-1)/workers) {
		wg.Go(func() { n.Add(int64(deliverEach(chunk, b))) })
	}
	wg.Wait()
	return int(n.Load())
}

// deliverEach delivers b to clients one after the other and returns the
// deliveries made now.
func deliverEach(clients []*client, b *batch) int {
	n := 0
	for _, c := range clients {
		n += c.deliver(b)
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
