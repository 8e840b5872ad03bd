package server

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/chatd/chat/store"
)

// roomRig is a server's delivery path alone (relay, room index, hub) with
// n live sockets, each logged in as its own user, and the first members
// of them in room 2.
func roomRig(tb testing.TB, n, members int) (*Server, []*countingSocket, *atomic.Int64) {
	tb.Helper()
	s := &Server{hub: newHub(), members: newMemberships(nil, discardLogger())}
	s.relay = newRelay(s)
	var delivered atomic.Int64
	s.hub.onDeliver = func(k int) { delivered.Add(int64(k)) }
	socks := make([]*countingSocket, n)
	for i := range n {
		socks[i] = &countingSocket{}
		user := fmt.Sprint("u", i)
		c := &conn{sock: socks[i], base: discardLogger(), rooms: s.members, user: user}
		s.hub.join(c)
		c.goLive(nil)
		s.members.attach(c, user)
		if i < members {
			s.members.set(user, 2, true)
		}
	}
	return s, socks, &delivered
}

// TestRoomMessageCostsItsMembers: on a server holding 5,000 sockets, a
// message to a room of 10 is 10 deliveries, to those 10; a message to
// general is still one to every socket.
func TestRoomMessageCostsItsMembers(t *testing.T) {
	s, socks, delivered := roomRig(t, 5000, 10)
	<-s.deliver(store.Message{ID: 1, Content: "to the ten", Username: "u0", RoomID: 2})
	if got := delivered.Load(); got != 10 {
		t.Errorf("a message to a room of 10 cost %d deliveries, want 10", got)
	}
	for i, sk := range socks {
		if want := int64(0); i < 10 {
			want = 1
			if sk.n.Load() != want {
				t.Errorf("member socket %d got %d writes, want 1", i, sk.n.Load())
			}
		} else if sk.n.Load() != want {
			t.Fatalf("socket %d, not a member, got %d writes", i, sk.n.Load())
		}
	}
	<-s.deliver(store.Message{ID: 2, Content: "to everyone", Username: "u0"})
	if got := delivered.Load(); got != 10+5000 {
		t.Errorf("after a general message: %d deliveries, want %d", got, 10+5000)
	}
}

// BenchmarkRoomFanout is one message to a room of 10 members on a server
// holding 5,000 sockets, against one to general on the same server:
//
//	go test -run '^$' -bench RoomFanout -benchmem -benchtime 2000x ./server/
//
// Results, with the time per message and per delivery of each: section
// "room" of bench/RESULTS.md (BENCH=room bench/run.sh runs it again).
// General's fan-out is BenchmarkFanout, section "fanout" there.
func BenchmarkRoomFanout(b *testing.B) {
	for _, tc := range []struct {
		name string
		room int64
	}{{"room-of-10", 2}, {"general", store.General}} {
		b.Run(tc.name, func(b *testing.B) {
			s, _, delivered := roomRig(b, 5000, 10)
			b.ReportAllocs()
			id := int64(0)
			for b.Loop() {
				id++
				<-s.deliver(store.Message{ID: id, Content: "hello, this is a chat message", Username: "u0", RoomID: tc.room})
			}
			b.ReportMetric(float64(delivered.Load())/float64(b.N), "deliveries/op")
		})
	}
}

// TestRoomEventCheckedAtDelivery: a room's message queued for a socket
// whose user then leaves the room (or logs out, or switches user) before
// the flusher reaches it is not given to that socket.
func TestRoomEventCheckedAtDelivery(t *testing.T) {
	s, socks, _ := roomRig(t, 3, 3)
	s.hub.qmu.Lock()
	s.hub.flushing = true // hold the flusher: this test runs it
	s.hub.qmu.Unlock()
	done := s.deliver(store.Message{ID: 1, Content: "queued", Username: "u0", RoomID: 2})
	s.members.apply("u1", 2, false) // u1 leaves
	var u2 *conn
	for c := range s.hub.conns {
		if c.user == "u2" {
			u2 = c
		}
	}
	u2.mu.Lock()
	u2.detachLocked() // u2 logs out
	u2.user = ""
	u2.mu.Unlock()
	s.hub.flush()
	<-done
	if got := []int64{socks[0].n.Load(), socks[1].n.Load(), socks[2].n.Load()}; got[0] != 1 || got[1] != 0 || got[2] != 0 {
		t.Errorf("writes per socket = %v, want [1 0 0]: only the member still in the room", got)
	}
}
