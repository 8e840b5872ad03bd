package socketio

import "sync"

// serial runs a socket's tasks one at a time in the order they were queued,
// on a goroutine that exists only while tasks are waiting: an idle socket
// costs no goroutine, and a handler that blocks (a database call) delays
// only its own socket's later events, never the connection's reader or
// other sockets.
type serial struct {
	mu      sync.Mutex
	q       []func() // q[head:] are waiting
	head    int
	running bool // a goroutine is draining q
	closed  bool // the last task was queued; later ones are dropped
}

// maxIdleQueue is the capacity an idle queue may keep for its next burst.
const maxIdleQueue = 16

// do queues f and reports whether it was queued: false once closed, or
// when max tasks are already waiting (max <= 0: no bound).
func (e *serial) do(f func(), max int) bool {
	e.mu.Lock()
	if e.closed || (max > 0 && len(e.q)-e.head >= max) {
		e.mu.Unlock()
		return false
	}
	if e.head > 0 && e.head >= len(e.q)/2 {
		// A queue that never empties would otherwise grow for ever behind
		// its head.
		n := copy(e.q, e.q[e.head:])
		clear(e.q[n:])
		e.q, e.head = e.q[:n], 0
	}
	e.q = append(e.q, f)
	start := !e.running
	e.running = true
	e.mu.Unlock()
	if start {
		go e.run()
	}
	return true
}

// close queues last as the final task (nil: none) and drops every task
// queued after it.
func (e *serial) close(last func()) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	if last != nil {
		e.q = append(e.q, last)
	}
	e.closed = true
	start := !e.running && len(e.q) > e.head
	e.running = e.running || start
	e.mu.Unlock()
	if start {
		go e.run()
	}
}

func (e *serial) run() {
	for {
		e.mu.Lock()
		if e.head == len(e.q) {
			if cap(e.q) > maxIdleQueue || e.closed {
				e.q = nil
			} else {
				e.q = e.q[:0]
			}
			e.head = 0
			e.running = false
			e.mu.Unlock()
			return
		}
		f := e.q[e.head]
		e.q[e.head] = nil
		e.head++
		e.mu.Unlock()
		f()
	}
}
