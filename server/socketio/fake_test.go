package socketio

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/server/socketio/engineio"
)

// fakeSession is an Engine.IO session that records what is sent to it.
type fakeSession struct {
	id    string
	proto int

	mu     sync.Mutex
	out    []string // text messages; binary ones as "bin:" + bytes
	closed string   // the reason of Close, "" while open
	wake   chan struct{}
}

func newFake(proto int) *fakeSession {
	return &fakeSession{id: fmt.Sprintf("eio-%d", time.Now().UnixNano()), proto: proto, wake: make(chan struct{}, 1)}
}

func (f *fakeSession) ID() string    { return f.id }
func (f *fakeSession) Protocol() int { return f.proto }
func (f *fakeSession) Data() any     { return "data of " + f.id }

func (f *fakeSession) push(m ...string) {
	f.mu.Lock()
	if f.closed == "" {
		f.out = append(f.out, m...)
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fakeSession) Send(text string)    { f.push(text) }
func (f *fakeSession) SendBinary(b []byte) { f.push("bin:" + string(b)) }
func (f *fakeSession) SendPrepared(p *engineio.Prepared) {
	f.push(preparedTexts(p)...)
}

func (f *fakeSession) Close(reason string) {
	f.mu.Lock()
	if f.closed == "" {
		f.closed = reason
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// wait returns the first n messages once they are there.
func (f *fakeSession) wait(t testing.TB, n int) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		f.mu.Lock()
		if len(f.out) >= n {
			out := append([]string(nil), f.out[:n]...)
			f.mu.Unlock()
			return out
		}
		got := append([]string(nil), f.out...)
		f.mu.Unlock()
		select {
		case <-f.wake:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("want %d messages, have %q", n, got)
		}
	}
}

// waitClosed returns the reason the session was closed with.
func (f *fakeSession) waitClosed(t testing.TB) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		f.mu.Lock()
		r := f.closed
		f.mu.Unlock()
		if r != "" {
			return r
		}
		select {
		case <-f.wake:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("session not closed")
		}
	}
}

func (f *fakeSession) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed != ""
}

func (f *fakeSession) messages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.out...)
}

// rig is a server with fake sessions.
type rig struct {
	srv  *Server
	errs chan error
}

func newRig(t testing.TB, o Options) *rig {
	r := &rig{errs: make(chan error, 100)}
	o.OnError = func(sid string, err error) {
		select {
		case r.errs <- err:
		default:
		}
	}
	r.srv = NewServer(o)
	t.Cleanup(r.srv.Close)
	return r
}

// open starts a connection of protocol proto (3 or 4).
func (r *rig) open(proto int) (*conn, *fakeSession) {
	f := newFake(proto)
	return newConn(r.srv, f), f
}

// recv delivers a text message from the client.
func (c *conn) recv(s string) { c.onMessage([]byte(s), false) }

// recvBin delivers a binary message from the client.
func (c *conn) recvBin(b []byte) { c.onMessage(b, true) }

func (r *rig) lastErr(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no error reported")
		return nil
	}
}

// sidOf returns the sid of a CONNECT acknowledgement `0{"sid":"..."}`.
func sidOf(t testing.TB, ack string) string {
	t.Helper()
	i := strings.Index(ack, `{"sid":"`)
	if i < 0 || !strings.HasSuffix(ack, `"}`) {
		t.Fatalf("not a CONNECT acknowledgement: %q", ack)
	}
	return ack[i+8 : len(ack)-2]
}

func preparedTexts(p *engineio.Prepared) []string { return p.Texts() }
