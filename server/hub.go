package server

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/chatd/chat/server/socketio"
	"github.com/chatd/chat/server/socketio/engineio"
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

	mu sync.RWMutex
	// conns is guarded by mu.
	conns map[*conn]struct{}

	qmu sync.Mutex
	// Guarded by qmu: broadcasts not yet taken by the flusher, oldest
	// first, and whether a flusher goroutine is running.
	queue    []queued
	flushing bool
}

// queued is one broadcast waiting for the flusher.
type queued struct {
	// id is the message's id, which a socket is given once (givenIDs);
	// 0 for an event that is not a new message (an edit, typing), which
	// is given every time.
	id   int64
	text string // its Socket.IO packet, encoded once for every recipient
	// to lists the recipients; nil means every socket (general).
	to []*conn
	// room is the room (other than general) whose members alone may be
	// given it, 0 for anyone. Checked again at delivery, so a socket
	// whose user left the room or logged out after to was made gets
	// nothing of it.
	room int64
	done chan struct{} // closed once every socket has been handed it
}

// mayHaveLocked reports whether c may be given o now: an event of a room
// only while c's user is in it.
func (c *conn) mayHaveLocked(o queued) bool {
	return o.room == 0 || (c.rooms != nil && c.user != "" && c.rooms.in(c.user, o.room))
}

func newHub() *hub {
	return &hub{conns: map[*conn]struct{}{}}
}

// join adds c; it receives nothing until goLive.
func (h *hub) join(c *conn) {
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.mu.Unlock()
}

// leave removes c, which must be closed already (conn.close), so that a
// pass under way gives it nothing more. It is safe to call more than once.
func (h *hub) leave(c *conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

// goLive is called once c's history has been sent: it records the
// history's ids as given, sends what arrived meanwhile that the history did
// not contain, and switches c to live delivery, where every message is
// checked against the same set. Ids are allotted before commit, so a
// message can become visible after a higher one: "not given" is not "id
// above the history's last", and only the set comparison is exact.
func (c *conn) goLive(history []store.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.live = true
	for _, m := range history {
		c.given.add(m.ID)
	}
	var texts []string
	for _, o := range c.pending {
		if c.mayHaveLocked(o) && c.given.add(o.id) {
			texts = append(texts, o.text)
		}
	}
	if len(texts) > 0 {
		c.sock.EmitPrepared(engineio.Prepare(texts...))
	}
	c.pending = nil
}

// givePage records the ids of a page of older messages about to be sent
// to c and returns the page without those c was given already (live: a
// resend or a late commit below its history can arrive before the page is
// read). Recorded newest first, so that each extends the set downwards.
func (c *conn) givePage(ms []store.Message) []store.Message {
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
func (c *conn) deliver(b *batch) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
	case !c.mayHaveLocked(b.items[0]):
		// A room's event (alone in its batch, see flush) for a socket
		// whose user is no longer in the room.
	case c.live:
		for i, o := range b.items {
			if !c.given.add(o.id) {
				// Given already (by the history, mostly): this socket
				// gets the others, encoded for it alone. Rare, so the
				// common pass stays one write of the shared frames.
				texts := make([]string, 0, len(b.items)-1)
				for _, o := range b.items[:i] {
					texts = append(texts, o.text)
				}
				for _, o := range b.items[i+1:] {
					if c.given.add(o.id) {
						texts = append(texts, o.text)
					}
				}
				if len(texts) > 0 {
					c.sock.EmitPrepared(engineio.Prepare(texts...))
				}
				return len(texts)
			}
		}
		c.sock.EmitPrepared(b.prepared)
		return len(b.items)
	case len(c.pending)+len(b.items) > maxPending:
		c.closed = true
		go c.disconnect("too many messages while loading history")
	default:
		c.pending = append(c.pending, b.items...)
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
	return h.enqueue(queued{id: m.ID, text: newMessageText(m)})
}

// enqueue queues o for the flusher, in order with every other broadcast:
// an edit queued after its message reaches each socket after it.
func (h *hub) enqueue(o queued) <-chan struct{} {
	o.done = make(chan struct{})
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
// (engineio.Options.MaxQueued) and a pass does not hold back the first
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
		// A pass carries a run of broadcasts to every socket, or one
		// event to its own recipients (a room's members).
		n, size := 0, 0
		for n < len(h.queue) && n < maxBatch && (n == 0 || size+len(h.queue[n].text) <= maxBatchBytes) &&
			(n == 0 || h.queue[n].to == nil) {
			size += len(h.queue[n].text)
			n++
			if h.queue[0].to != nil {
				break
			}
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

		conns := batch[0].to
		if conns == nil {
			h.mu.RLock()
			conns = make([]*conn, 0, len(h.conns))
			for c := range h.conns {
				conns = append(conns, c)
			}
			h.mu.RUnlock()
		}
		b := newBatch(batch)
		delivered := deliverAll(conns, b)
		if h.onDeliver != nil {
			h.onDeliver(delivered)
		}
		for _, o := range batch {
			close(o.done)
		}
	}
}

// batch is one pass of the flusher: its messages, prepared once for every
// socket (a WebSocket gets the whole pass as ready frames in one write).
type batch struct {
	items    []queued
	prepared *engineio.Prepared
}

func newBatch(items []queued) *batch {
	texts := make([]string, len(items))
	for i, o := range items {
		texts[i] = o.text
	}
	return &batch{items: items, prepared: engineio.Prepare(texts...)}
}

// fanoutChunk is the fewest recipients a broadcast hands to a goroutine
// of its own. A delivery is mostly one write(2) (several µs on loopback),
// so a room of thousands takes tens of milliseconds on one core; split
// over the cores it reaches the last recipient proportionally sooner, but
// each write then costs more: the writers contend for the kernel's socket
// and wakeup paths and each other's cache lines. At 5,000 recipients
// (loadtest c5000r5) two writers spent 8 % more CPU per delivery than one
// and bought 40 ms of fan-out time that Node's single thread does not
// have either (its p99 there is about 100 ms), so a second writer starts
// only where the time it saves is worth it.
const fanoutChunk = 8192

// deliverAll delivers b to every conn, in parallel chunks when there are
// many, and returns the deliveries made now. It returns once all have been
// handed b, so consecutive passes reach each conn in order.
func deliverAll(conns []*conn, b *batch) int {
	workers := min(runtime.GOMAXPROCS(0), len(conns)/fanoutChunk)
	if workers <= 1 {
		return deliverEach(conns, b)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	for chunk := range slices.Chunk(conns, (len(conns)+workers-1)/workers) {
		wg.Go(func() { n.Add(int64(deliverEach(chunk, b))) })
	}
	wg.Wait()
	return int(n.Load())
}

// deliverEach delivers b to conns one after the other and returns the
// deliveries made now.
func deliverEach(conns []*conn, b *batch) int {
	n := 0
	for _, c := range conns {
		n += c.deliver(b)
	}
	return n
}

// count returns the number of connected sockets.
func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}

// newMessageText is m's `new message` event as a Socket.IO packet, encoded
// once for every recipient.
func newMessageText(m store.Message) string {
	p, err := socketio.PrepareEvent("new message", wireMsg(m))
	if err != nil {
		// wireMessage is strings and numbers: it always encodes.
		panic("server: encoding a message: " + err.Error())
	}
	return p.Texts()[0]
}
