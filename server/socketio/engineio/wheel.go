package engineio

import (
	"sync"
	"sync/atomic"
	"time"
)

// wheel is a hashed timer wheel: every session's heartbeat and write
// deadline is a node linked into one of its slots, and one goroutine
// advances it. A timer per session would cost a runtime timer (and in the
// library we replace, a parked goroutine) for every idle connection.
//
// Nodes fire at most one tick late. Callbacks re-check the session's
// precise deadlines, so a node that fires early or for a stale reason is
// harmless, and requests check the same deadlines at arrival, so a tick of
// lateness never lets a timed-out session answer.
type wheel struct {
	tick  time.Duration
	epoch time.Time
	now   atomic.Int64 // ticks since epoch, as far as the wheel has run

	mu    sync.Mutex
	slots [wheelSlots]wheelNode // sentinels of circular lists

	stop chan struct{}
	done chan struct{}
}

const wheelSlots = 512

// Timer kinds: which of a session's deadlines a node stands for.
const (
	timerHeartbeat = iota
	timerWrite
)

// wheelNode is embedded in Session; linked while scheduled.
type wheelNode struct {
	next, prev *wheelNode
	when       int64
	s          *Session
	kind       uint8
}

func newWheel(tick time.Duration) *wheel {
	w := &wheel{tick: tick, epoch: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range w.slots {
		w.slots[i].next = &w.slots[i]
		w.slots[i].prev = &w.slots[i]
	}
	go w.run()
	return w
}

// nanos is the precise time since the wheel's epoch.
func (w *wheel) nanos() int64 { return int64(time.Since(w.epoch)) }

// schedule (re)links n to fire d from now (at least one tick).
func (w *wheel) schedule(n *wheelNode, d time.Duration) {
	ticks := int64((d + w.tick - 1) / w.tick)
	if ticks < 1 {
		ticks = 1
	}
	w.mu.Lock()
	if n.next != nil {
		n.prev.next, n.next.prev = n.next, n.prev
	}
	n.when = w.now.Load() + ticks
	head := &w.slots[n.when%wheelSlots]
	n.prev, n.next = head.prev, head
	head.prev.next = n
	head.prev = n
	w.mu.Unlock()
}

// scheduleIfIdle links n unless it is already linked.
func (w *wheel) scheduleIfIdle(n *wheelNode, d time.Duration) {
	w.mu.Lock()
	linked := n.next != nil
	w.mu.Unlock()
	if !linked {
		w.schedule(n, d)
	}
}

func (w *wheel) cancel(n *wheelNode) {
	w.mu.Lock()
	if n.next != nil {
		n.prev.next, n.next.prev = n.next, n.prev
		n.next, n.prev = nil, nil
	}
	w.mu.Unlock()
}

func (w *wheel) close() {
	close(w.stop)
	<-w.done
}

func (w *wheel) run() {
	defer close(w.done)
	t := time.NewTicker(w.tick)
	defer t.Stop()
	var fired []*wheelNode
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		target := int64(time.Since(w.epoch) / w.tick)
		fired = fired[:0]
		w.mu.Lock()
		for now := w.now.Load(); now < target; {
			now++
			w.now.Store(now)
			head := &w.slots[now%wheelSlots]
			for n := head.next; n != head; {
				next := n.next
				if n.when <= now {
					n.prev.next, n.next.prev = n.next, n.prev
					n.next, n.prev = nil, nil
					fired = append(fired, n)
				}
				n = next
			}
		}
		w.mu.Unlock()
		for i, n := range fired {
			n.s.onTimer(n.kind)
			fired[i] = nil
		}
	}
}
