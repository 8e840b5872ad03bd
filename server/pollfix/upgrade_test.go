package pollfix_test

import (
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chat/server/pollfix"
	"github.com/zishang520/socket.io/parsers/engine/v3/packet"
	"github.com/zishang520/socket.io/servers/engine/v3/transports"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

// pollingUnderTest is a polling transport of one session with a count of
// the errors it reported (each closes the session in the engine).
type pollingUnderTest struct {
	t      *testing.T
	tr     transports.Transport
	errors atomic.Int32
}

func newPolling(t *testing.T, b transports.TransportCtor) *pollingUnderTest {
	t.Helper()
	r := httptest.NewRequest("GET", "/socket.io/?EIO=4&transport=polling", nil)
	p := &pollingUnderTest{t: t, tr: b.New(types.NewHttpContext(httptest.NewRecorder(), r))}
	_ = p.tr.On("error", func(...any) { p.errors.Add(1) })
	return p
}

// get sends a long-poll GET and returns a function that waits for its
// answer (the body, or "" with ok false if none came within d).
func (p *pollingUnderTest) get() func(d time.Duration) (body string, ok bool) {
	rec := httptest.NewRecorder()
	ctx := types.NewHttpContext(rec, httptest.NewRequest("GET", "/socket.io/?EIO=4&transport=polling", nil))
	p.tr.OnRequest(ctx)
	return func(d time.Duration) (string, bool) {
		select {
		case <-ctx.Done():
			return rec.Body.String(), true
		case <-time.After(d):
			return "", false
		}
	}
}

func noop() []*packet.Packet { return []*packet.Packet{{Type: packet.NOOP}} }
func message(s string) []*packet.Packet {
	return []*packet.Packet{{Type: packet.MESSAGE, Data: strings.NewReader(s)}}
}

// TestPollingSendRace plays, in a fixed order, the interleaving that closed
// sessions during upgrades: the upgrade's NOOP and the engine's flush both
// saw one pending poll as writable, and both sent. The second Send must
// neither fail the session nor lose its packets.
func TestPollingSendRace(t *testing.T) {
	t.Run("noop first, then the flush", func(t *testing.T) {
		p := newPolling(t, &pollfix.Builder{})
		first := p.get()
		p.tr.Send(noop())
		p.tr.Send(message("hello"))
		if body, ok := first(2 * time.Second); !ok || body != "6" {
			t.Fatalf("first poll answered %q (ok %v), want the NOOP", body, ok)
		}
		if n := p.errors.Load(); n != 0 {
			t.Fatalf("%d transport errors: the session would have been closed", n)
		}
		if body, ok := p.get()(2 * time.Second); !ok || body != "4hello" {
			t.Fatalf("next poll answered %q (ok %v), want the held message", body, ok)
		}
	})
	t.Run("flush first, then the noop", func(t *testing.T) {
		p := newPolling(t, &pollfix.Builder{})
		first := p.get()
		p.tr.Send(message("hello"))
		p.tr.Send(noop())
		if body, ok := first(2 * time.Second); !ok || body != "4hello" {
			t.Fatalf("first poll answered %q (ok %v), want the message", body, ok)
		}
		if n := p.errors.Load(); n != 0 {
			t.Fatalf("%d transport errors: the session would have been closed", n)
		}
		// The late NOOP is dropped, not sent on the next poll.
		next := p.get()
		p.tr.Send(message("again"))
		if body, ok := next(2 * time.Second); !ok || body != "4again" {
			t.Fatalf("next poll answered %q (ok %v), want only the next message", body, ok)
		}
	})
	t.Run("held packets go before newer ones", func(t *testing.T) {
		p := newPolling(t, &pollfix.Builder{})
		first := p.get()
		p.tr.Send(noop())
		p.tr.Send(message("older"))
		first(2 * time.Second)
		// A flush that wins against the held packets' "ready" handler
		// still sends them first.
		next := p.get()
		p.tr.Send(message("newer"))
		body, ok := next(2 * time.Second)
		if !ok || !strings.HasPrefix(body, "4older") {
			t.Fatalf("next poll answered %q (ok %v), want the held message first", body, ok)
		}
	})
}

// TestLibraryPollingSendRace shows the library's own transport failing the
// same interleaving: "polling write error", which closes the session. The
// day it passes, upstream has fixed the race and Builder can go.
func TestLibraryPollingSendRace(t *testing.T) {
	p := newPolling(t, &transports.PollingBuilder{})
	first := p.get()
	p.tr.Send(noop())
	p.tr.Send(message("hello"))
	first(2 * time.Second)
	deadline := time.Now().Add(2 * time.Second)
	for p.errors.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.errors.Load() == 0 {
		t.Fatal("the library's polling transport took a second Send for one poll without error: the race may be fixed upstream; see pollfix.Builder")
	}
}
