package natsbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/bus"
)

// gateProxy forwards TCP connections to a NATS server; while frozen it
// holds what clients send (the server's answers still flow), as if the
// publisher had died with the bytes still in its buffers.
type gateProxy struct {
	ln   net.Listener
	gate sync.Mutex // held while frozen
	mu   sync.Mutex
	cs   []net.Conn
}

func newGateProxy(t *testing.T, upstream string) *gateProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &gateProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.cs = append(p.cs, c, u)
			p.mu.Unlock()
			go func() { io.Copy(c, u); c.Close() }()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						p.gate.Lock()
						_, werr := u.Write(buf[:n])
						p.gate.Unlock()
						if werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				u.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.cs {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

// chanHandler hands events to a channel.
type chanHandler chan bus.Event

func (h chanHandler) HandleEvent(e bus.Event) { h <- e }
func (h chanHandler) Resync()                 {}

func testSubject() string {
	var r [6]byte
	rand.Read(r[:])
	return "chatd.test." + hex.EncodeToString(r[:]) + ".events"
}

// TestPublishReturnsOnceServerHasIt is issue 14's lost acknowledged message,
// made deterministic: the publisher's bytes stop reaching the NATS server
// (its process was killed with them still in the client's buffer). Publish
// must not report success then; before the fix it returned nil at once,
// the server never got the event, and the chat server acknowledged the
// message that no other server would deliver.
func TestPublishReturnsOnceServerHasIt(t *testing.T) {
	raw := natsURL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p := newGateProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	subject := testSubject()
	discard := slog.New(slog.DiscardHandler)
	pub, err := New(u.String(), subject, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := New(raw, subject, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make(chanHandler, 16)
	if err := sub.Subscribe(got); err != nil {
		t.Fatal(err)
	}
	wait := func(id int64) {
		t.Helper()
		select {
		case e := <-got:
			if e.ID != id {
				t.Fatalf("got event %d, want %d", e.ID, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d not delivered", id)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pub.Publish(ctx, bus.Event{Kind: bus.KindMessage, ID: 1, Origin: "p"}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	wait(1)

	p.gate.Lock() // frozen
	frozen := true
	defer func() {
		if frozen {
			p.gate.Unlock()
		}
	}()
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	err = pub.Publish(short, bus.Event{Kind: bus.KindMessage, ID: 2, Origin: "p"})
	if err == nil {
		t.Fatal("Publish returned nil while the server could not have the event (it is only in the client's buffer)")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Logf("Publish failed with %v", err)
	}
	select {
	case e := <-got:
		t.Fatalf("event %+v delivered while the publisher's bytes were held", e)
	case <-time.After(50 * time.Millisecond):
	}
	p.gate.Unlock()
	frozen = false
	// The bytes held go through: the event was sent, only not confirmed
	// in time (the caller treats it as possibly lost, and a chat client
	// resends: servers deliver an id once).
	wait(2)
	if err := pub.Publish(ctx, bus.Event{Kind: bus.KindMessage, ID: 3, Origin: "p"}); err != nil {
		t.Fatalf("Publish after the gate opened: %v", err)
	}
	wait(3)
}

// BenchmarkPublish measures what the confirmation costs a publisher:
// confirmed is Publish (the event, then a PING answered by the server),
// queued is the bare client publish it replaced (returns with the event in
// the client's buffer). Parallel runs 8 publishers at once, as concurrent
// senders do.
//
//	TEST_NATS_URL=nats://127.0.0.1:4222 go test -run '^$' -bench Publish$ -benchtime 2000x ./bus/natsbus
//
// Results: section "bus" of bench/RESULTS.md (BENCH=bus bench/run.sh); the
// difference between confirmed and queued is what the acknowledgement
// waits for, about one loopback round trip to nats-server.
func BenchmarkPublish(b *testing.B) {
	raw := natsURL(b)
	discard := slog.New(slog.DiscardHandler)
	e := bus.Event{Kind: bus.KindMessage, ID: 1 << 40, Origin: "bench-origin-0123456789", Sent: time.Now().UnixNano()}
	for _, mode := range []string{"confirmed", "queued"} {
		for _, par := range []bool{false, true} {
			name := mode
			if par {
				name += "/parallel8"
			}
			b.Run(name, func(b *testing.B) {
				pub, err := New(raw, testSubject(), discard)
				if err != nil {
					b.Fatal(err)
				}
				defer pub.Close()
				ctx := context.Background()
				one := func() {
					if mode == "confirmed" {
						if err := pub.Publish(ctx, e); err != nil {
							b.Error(err)
						}
					} else if err := pub.nc.Publish(pub.subject, []byte(`{"k":"message","id":1099511627776,"o":"bench-origin-0123456789","t":1764078000123456789}`)); err != nil {
						b.Error(err)
					}
				}
				b.ResetTimer()
				if !par {
					for b.Loop() {
						one()
					}
					return
				}
				b.SetParallelism(4) // 4 x GOMAXPROCS (2) = 8
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						one()
					}
				})
			})
		}
	}
}
