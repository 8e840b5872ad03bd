package pollfix

import (
	"sync"

	"github.com/zishang520/socket.io/parsers/engine/v3/packet"
	"github.com/zishang520/socket.io/servers/engine/v3"
	"github.com/zishang520/socket.io/servers/engine/v3/transports"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

// Builder makes the long-polling transport for the engine, in place of the
// library's PollingBuilder (JSONP requests still get the library's own). It
// closes a third hole, one that killed about one polling-first client in a
// thousand when many upgraded at once (issue 13): the session died during
// its upgrade, the server logged nothing, and the stock client, whose
// polling was paused for the upgrade, sat silent until its ping timeout
// 8 s later.
//
// The race, in github.com/zishang520/socket.io/servers/engine/v3 v3.0.6
// (not yet reported upstream): one long-poll GET can be answered by only
// one Send, and two goroutines may both decide to send. The engine
// socket's flush checks Writable() and calls Send; so does the upgrade's
// check timer (socket.go, MaybeUpgrade: a NOOP every 100 ms "to ensure a
// fast upgrade"), without the flush's lock. Both can see the transport
// writable; the second Send then finds no request to answer, and
// (*polling).write fails with "polling write error", which closes the whole
// session with reason "transport error". Node's engine.io runs on one
// thread and cannot interleave them.
//
// Polling serialises its Sends and keeps a Send that arrives when no poll
// is pending instead of failing: a lone NOOP is dropped (the poll it was
// meant to end is being answered), other packets are held and sent first
// on the next poll, or, if the client upgrades meanwhile, handed to the
// new transport (HandOverOnUpgrade). TestPollingSendRace fails without it.
type Builder struct {
	transports.PollingBuilder
}

func (b *Builder) New(ctx *types.HttpContext) transports.Transport {
	if ctx.Query().Has("j") {
		return b.PollingBuilder.New(ctx)
	}
	p := &Polling{Polling: transports.MakePolling()}
	p.Prototype(p)
	p.Construct(ctx)
	// Registered before the engine socket's own "ready" listener (its
	// flush), so held packets, the older ones, go out first.
	_ = p.On("ready", func(...any) { p.sendHeld() })
	return p
}

// Polling is the library's long-polling transport with its Sends
// serialised; see Builder.
type Polling struct {
	transports.Polling

	mu sync.Mutex
	// Guarded by mu: packets that arrived while no poll was pending, in
	// order, and how many engine flushes they came from.
	held    []*packet.Packet
	batches int
	// handedOver: the session moved to another transport; nothing more
	// is held here.
	handedOver bool
}

// Send answers the pending poll with packets, or holds them until the next
// one; see Builder.
func (p *Polling) Send(packets []*packet.Packet) {
	noop := onlyNoops(packets)
	p.mu.Lock()
	if !p.Writable() || p.handedOver {
		if !noop && !p.handedOver {
			p.held = append(p.held, packets...)
			p.batches++
		}
		p.mu.Unlock()
		return
	}
	batches := 1
	if len(p.held) > 0 {
		if noop {
			packets, batches = p.held, p.batches
		} else {
			packets, batches = append(p.held, packets...), p.batches+1
		}
		p.held, p.batches = nil, 0
	}
	p.Polling.Send(packets)
	p.mu.Unlock()
	p.extraDrains(batches)
}

// sendHeld answers a new poll with the held packets, if any.
func (p *Polling) sendHeld() {
	p.mu.Lock()
	if len(p.held) == 0 || !p.Writable() || p.handedOver {
		p.mu.Unlock()
		return
	}
	packets, batches := p.held, p.batches
	p.held, p.batches = nil, 0
	p.Polling.Send(packets)
	p.mu.Unlock()
	p.extraDrains(batches)
}

// extraDrains keeps the engine's send callbacks in step: it runs one batch
// per "drain", and the transport emits one per write, so a write that
// carries the packets of several flushes owes the rest.
func (p *Polling) extraDrains(batches int) {
	for range batches - 1 {
		p.Emit("drain")
	}
}

// takeHeld ends holding and returns what was held.
func (p *Polling) takeHeld() ([]*packet.Packet, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handedOver = true
	held, batches := p.held, p.batches
	p.held, p.batches = nil, 0
	return held, batches
}

// HandOverOnUpgrade makes packets that conn's polling transport still
// holds when the client upgrades go out on the new transport, before what
// the engine flushes there. Call it from the engine's "connection" event.
// (The engine emits "upgrade" after switching transports and before
// flushing its buffer to the new one; a packet that another goroutine
// flushes in between can overtake the held ones, which are then at most
// a few microseconds older.)
func HandOverOnUpgrade(conn engine.Socket) {
	p, ok := conn.Transport().(*Polling)
	if !ok {
		return
	}
	_ = conn.Once("upgrade", func(args ...any) {
		held, batches := p.takeHeld()
		if len(held) == 0 || len(args) == 0 {
			return
		}
		if t, ok := args[0].(transports.Transport); ok {
			t.Send(held)
			for range batches - 1 {
				t.Emit("drain")
			}
		}
	})
}

func onlyNoops(packets []*packet.Packet) bool {
	for _, pk := range packets {
		if pk.Type != packet.NOOP {
			return false
		}
	}
	return true
}
