// Package wstransport is the Engine.IO WebSocket transport of the chat
// server, registered with github.com/zishang520/socket.io's engine through
// its Transports option in place of the library's own. The engine still
// does the handshake, the upgrade from polling, heartbeats and the
// Socket.IO layer; this package only moves frames.
//
// Why not the library's transport: it is the server's hot path, and it
// spends most of its time on things a broadcast does not need. For every
// packet to every recipient it queues a task (a new goroutine whenever the
// queue was idle), writes through gorilla/websocket's NextWriter (one
// write() per packet, however many are queued), and for pre-encoded
// packets builds a gorilla PreparedMessage, a throwaway connection with a
// 4 KiB buffer, per recipient. A packet queued while a write is blocked
// waits in an unbounded buffer, and a peer that stops reading holds it
// forever.
//
// Here each connection has one queue of ready WebSocket frames in one
// buffer. Send and WriteFrame append to it and, when nothing is in flight,
// try one non-blocking write() on the spot: usually the kernel takes it
// all, and the delivery costs that one system call and no goroutine. What
// the kernel does not take waits for a writer goroutine, started only
// while there is something left, which takes everything queued and writes
// it with one write(), so packets that pile up while the peer is slow go
// out together. A frame built once can be appended to any
// number of connections (WriteFrame): the chat's broadcast encodes a
// message once and does no per-recipient encoding at all. The queue is
// bounded: a peer that lets it grow past MaxQueued bytes is disconnected
// (a reader that slow cannot keep up with the room), and the write
// deadline of the connection (see package timeouts) cuts off one that
// stops reading altogether.
//
// Reading stays with gorilla/websocket, as in the library. Control frames
// that gorilla writes by itself (the answer to a close or a ping) go
// straight to the connection; each of those and each of our flushes is a
// single write() on the same socket, which the kernel never interleaves.
package wstransport

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	ws "github.com/gorilla/websocket"
	"github.com/zishang520/socket.io/parsers/engine/v3/packet"
	"github.com/zishang520/socket.io/servers/engine/v3/transports"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

// DefaultMaxQueued is the queue bound when Builder.MaxQueued is zero: a
// few hundred chat messages, or a handful of history pages.
const DefaultMaxQueued = 1 << 20

// spareCap bounds the buffer a connection keeps between bursts. Idle
// connections are most connections; they should not hold write buffers.
const spareCap = 4 << 10

// ErrSlowPeer is the error a connection is closed with when its queue
// outgrows the bound.
var ErrSlowPeer = errors.New("wstransport: peer reads too slowly, queue limit reached")

// Builder makes the transport for the engine: pass it to
// ServerOptions.SetTransports together with the library's PollingBuilder.
type Builder struct {
	// MaxQueued bounds the bytes waiting to be written to one
	// connection. Zero means DefaultMaxQueued; negative, no bound.
	MaxQueued int
	// OnSlowPeer, if set, is called once with the session id of a
	// connection that exceeded MaxQueued or whose write deadline passed
	// (see package timeouts), just before it is closed, on the goroutine
	// that queued the last frame or wrote: it must be quick.
	OnSlowPeer func(sid string)
}

func (b *Builder) New(ctx *types.HttpContext) transports.Transport {
	t := &Transport{Transport: transports.MakeTransport(), builder: b}
	t.Prototype(t)
	t.Construct(ctx)
	return t
}

func (*Builder) Name() string          { return transports.WEBSOCKET }
func (*Builder) HandlesUpgrades() bool { return true }
func (*Builder) UpgradesTo() []string  { return nil }
func (b *Builder) maxQueued() int {
	switch {
	case b.MaxQueued == 0:
		return DefaultMaxQueued
	case b.MaxQueued < 0:
		return int(^uint(0) >> 1)
	}
	return b.MaxQueued
}

// Transport is one WebSocket connection of an Engine.IO session.
type Transport struct {
	transports.Transport
	builder     *Builder
	conn        *types.WebSocketConn
	raw         net.Conn
	rc          syscall.RawConn // raw's descriptor, for tryWrite; nil if it has none
	idleTimeout time.Duration
	max         int

	mu sync.Mutex
	// Guarded by mu.
	queue   []byte // frames not yet handed to the writer
	spare   []byte // the writer's last buffer, reused when small
	writing bool   // a writer goroutine is running
	closing bool   // close the connection once the queue is written
	done    bool   // closed, or failed: nothing more is queued
}

func (t *Transport) Construct(ctx *types.HttpContext) {
	t.Transport.Construct(ctx)
	t.idleTimeout = ctx.IdleTimeout
	t.conn = ctx.Websocket
	t.raw = t.conn.NetConn()
	if sc, ok := t.raw.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			t.rc = rc
		}
	}
	t.max = t.builder.maxQueued()

	_ = t.conn.On("error", func(errs ...any) {
		var err error
		if len(errs) > 0 {
			err, _ = errs[0].(error)
		}
		t.OnError("websocket error", err)
	})
	_ = t.conn.Once("close", func(...any) { t.OnClose() })

	// Always writable: the queue below is the buffer, so the engine
	// socket hands every packet over at once and never holds its own.
	t.SetWritable(true)
	t.SetPerMessageDeflate(nil)

	transports.StartReader(t, ctx.TransportReadPermission(), t.read)
}

func (t *Transport) Name() string          { return transports.WEBSOCKET }
func (t *Transport) HandlesUpgrades() bool { return true }

// read hands every data frame to the engine until the connection ends,
// then closes the session.
//
// The first frames (the Socket.IO CONNECT above all) run the library's
// whole connect chain, and the application's connection handler, on this
// goroutine; its stack grows to fit and would stay that size for as long
// as the connection sits idle, which is most of its life. So after them
// the loop moves to a fresh goroutine, whose stack only has to hold the
// wait for the next frame.
func (t *Transport) read() {
	for range freshStackAfter {
		if !t.readFrame() {
			t.conn.Emit("close")
			return
		}
	}
	go func() {
		for t.readFrame() {
		}
		t.conn.Emit("close")
	}()
}

// freshStackAfter is how many data frames read handles before moving to a
// new goroutine: the Engine.IO upgrade probe and the Socket.IO CONNECT.
const freshStackAfter = 2

// readFrame hands the next data frame to the engine; false when the
// connection has ended.
func (t *Transport) readFrame() bool {
	for {
		if t.idleTimeout > 0 {
			_ = t.conn.SetReadDeadline(time.Now().Add(t.idleTimeout))
		}
		mt, r, err := t.conn.NextReader()
		if err != nil {
			if !ws.IsUnexpectedCloseError(err) && !errors.Is(err, net.ErrClosed) && !isCloseError(err) {
				t.conn.Emit("error", err)
			}
			return false
		}
		var buf types.BufferInterface
		switch mt {
		case ws.TextMessage:
			buf = types.NewStringBuffer(nil)
		case ws.BinaryMessage:
			buf = types.NewBytesBuffer(nil)
		default:
			continue
		}
		if _, err := buf.ReadFrom(r); err != nil {
			t.conn.Emit("error", err)
			return false
		}
		t.OnData(buf)
		return true
	}
}

func isCloseError(err error) bool {
	var ce *ws.CloseError
	return errors.As(err, &ce)
}

// Send queues packets from the engine socket. It never blocks on the peer.
func (t *Transport) Send(packets []*packet.Packet) {
	for _, p := range packets {
		if p.Options != nil && p.Options.WsPreEncodedFrame != nil {
			pre := p.Options.WsPreEncodedFrame
			_, text := pre.(*types.StringBuffer)
			t.enqueue(nil, pre.Bytes(), !text)
			continue
		}
		data, err := t.Parser().EncodePacket(p, t.SupportsBinary())
		if err != nil {
			t.fail("websocket encode error", err, false)
			return
		}
		_, text := data.(*types.StringBuffer)
		t.enqueue(nil, data.Bytes(), !text)
	}
	// The engine socket runs its send callbacks on drain, one batch per
	// Send; the packets are as good as sent once queued.
	t.Emit("drain")
}

// WriteFrame queues a complete WebSocket frame built by AppendFrame (an
// Engine.IO packet in it), shared by any number of connections: it is
// copied, never changed. It reports false if the connection is closed or
// was closed now for exceeding its queue bound.
func (t *Transport) WriteFrame(frame []byte) bool {
	return t.enqueue(frame, nil, false)
}

// enqueue appends a ready frame, or else a frame carrying payload, and
// makes sure a writer runs.
func (t *Transport) enqueue(frame, payload []byte, binaryFrame bool) bool {
	t.mu.Lock()
	if t.done || t.closing {
		t.mu.Unlock()
		return false
	}
	if frame != nil && len(t.queue) == 0 && !t.writing && t.rc != nil {
		// The common case of a broadcast: nothing waiting, so the shared
		// frame goes to the kernel from where it is, and only what the
		// kernel does not take is copied into the queue.
		n, err := t.tryWrite(frame)
		if err != nil {
			return t.abortLocked("websocket write error", err)
		}
		if n == len(frame) {
			t.mu.Unlock()
			return true
		}
		frame = frame[n:]
	}
	if frame != nil {
		t.queue = append(t.queue, frame...)
	} else {
		t.queue = AppendFrame(t.queue, payload, binaryFrame)
	}
	if !t.writing && t.rc != nil {
		// Nothing in flight: try to hand the bytes to the kernel right
		// here, without blocking. Usually the socket buffer has room and
		// that is the whole delivery: no goroutine, no wake-up.
		n, err := t.tryWrite(t.queue)
		if err != nil {
			return t.abortLocked("websocket write error", err)
		}
		t.queue = t.queue[:copy(t.queue, t.queue[n:])]
		if len(t.queue) == 0 {
			if cap(t.queue) > spareCap {
				t.queue = nil
			}
			t.mu.Unlock()
			return true
		}
	}
	if len(t.queue) > t.max {
		t.done = true
		t.queue = nil
		t.mu.Unlock()
		t.reportSlow()
		t.fail("websocket queue limit", ErrSlowPeer, true)
		return false
	}
	if !t.writing {
		t.writing = true
		go t.write()
	}
	t.mu.Unlock()
	return true
}

// abortLocked ends the connection after a failed write in enqueue:
// nothing more is queued, t.mu (held by the caller) is released, and err
// is reported and the connection closed (see fail). It returns false,
// enqueue's answer.
func (t *Transport) abortLocked(msg string, err error) bool {
	t.done = true
	t.queue = nil
	t.mu.Unlock()
	t.fail(msg, err, true)
	return false
}

// tryWrite makes one non-blocking write() of b and reports how much the
// kernel took; a full socket buffer is not an error. It runs under t.mu,
// which keeps the order of frames, and under the connection's write lock,
// which keeps gorilla's own control frames from landing inside ours.
func (t *Transport) tryWrite(b []byte) (int, error) {
	var n int
	var werr error
	if err := t.rc.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return true // one attempt: never wait for the peer here
			}
		}
	}); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// A deadline left by someone else (gorilla's control frames
			// set one): let the writer goroutine, whose writes set their
			// own, take over.
			return 0, nil
		}
		return 0, err
	}
	switch werr {
	case nil:
		return n, nil
	case syscall.EAGAIN:
		return 0, nil
	}
	return 0, werr
}

// reportSlow tells the application (Builder.OnSlowPeer) that this peer is
// being dropped for not keeping up.
func (t *Transport) reportSlow() {
	if f := t.builder.OnSlowPeer; f != nil {
		f(t.Sid())
	}
}

// fail reports err to the engine and, if close is set, closes the
// connection, on a goroutine of its own: both run the engine's whole close
// chain, down to the application's disconnect handler, and the caller of
// Send or WriteFrame may hold locks that handler takes (the chat hub
// delivers under its client's lock, and its disconnect handler takes that
// lock). Found by the hostile-client suite: done inline, the first failed
// delivery to a vanished peer deadlocked the sender's socket for good.
func (t *Transport) fail(msg string, err error, close bool) {
	go func() {
		t.OnError(msg, err)
		if close {
			t.conn.Close()
		}
	}()
}

// write writes what is queued, one buffer per write(), until the queue is
// empty, then ends (the next enqueue starts another).
func (t *Transport) write() {
	for {
		t.mu.Lock()
		if len(t.queue) == 0 || t.done {
			t.writing = false
			closing := t.closing && !t.done
			if closing {
				t.done = true
			}
			t.queue = nil
			t.mu.Unlock()
			if closing {
				t.conn.Close()
			}
			return
		}
		buf := t.queue
		t.queue = t.spare
		t.spare = nil
		t.mu.Unlock()

		_, err := t.raw.Write(buf)

		t.mu.Lock()
		if cap(buf) <= spareCap && t.spare == nil {
			t.spare = buf[:0]
		}
		if err != nil {
			t.done = true
			t.queue = nil
		}
		t.mu.Unlock()
		if err != nil {
			// The peer is gone or stopped reading (the write deadline
			// passed: a slow peer, reported as one). Closing the
			// connection ends the session.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.reportSlow()
			}
			t.conn.Close()
			return
		}
	}
}

// DoClose closes the connection once what is queued is written (bounded
// by the connection's write deadline), so a DISCONNECT packet sent just
// before the close reaches the peer.
func (t *Transport) DoClose(fn types.Callable) {
	t.mu.Lock()
	t.closing = true
	now := !t.writing && !t.done
	if now {
		t.done = true
	}
	t.mu.Unlock()
	if fn != nil {
		fn()
	}
	if now {
		t.conn.Close()
	}
}

// OnClose ends the transport: nothing more is queued, and the connection
// is closed if it is not already.
func (t *Transport) OnClose() {
	t.mu.Lock()
	t.done = true
	t.queue = nil
	t.spare = nil
	t.mu.Unlock()
	t.Transport.OnClose()
	_ = t.raw.Close()
}

// AppendFrame appends to b one unmasked, final WebSocket frame carrying
// payload as a text frame, or a binary one if binary is set (RFC 6455
// section 5.2; servers do not mask).
func AppendFrame(b, payload []byte, binaryFrame bool) []byte {
	return append(appendHeader(b, len(payload), binaryFrame), payload...)
}

// appendHeader appends the header of such a frame with n payload bytes.
func appendHeader(b []byte, n int, binaryFrame bool) []byte {
	op := byte(0x1)
	if binaryFrame {
		op = 0x2
	}
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
}

// MessageFrame builds the frame of an Engine.IO MESSAGE packet whose data
// is the text sio (an encoded Socket.IO packet): "4" then the data, in
// both protocol versions 3 and 4.
func MessageFrame(sio []byte) []byte {
	frame := appendHeader(make([]byte, 0, len(sio)+11), len(sio)+1, false)
	return append(append(frame, '4'), sio...)
}
