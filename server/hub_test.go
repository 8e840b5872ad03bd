package server

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chatd/chat/store"
)

// A broadcast to a room big enough to be split over goroutines reaches
// every live conn exactly once, holds messages for conns still loading
// their history, and consecutive broadcasts reach each conn in the order
// they were made.
func TestBroadcastToManyClients(t *testing.T) {
	const clients, messages = 2*fanoutChunk + 7, 20
	h := newHub()
	var delivered int
	h.onDeliver = func(n int) { delivered += n }
	recs := make([]*recorder, clients)
	var loading *conn
	for i := range clients {
		c, r := newTestConn(h)
		recs[i] = r
		if i == 0 {
			loading = c // still loading its history: held, not sent
		} else {
			c.goLive(nil)
		}
	}
	var sent []string
	var done []<-chan struct{}
	for i := range messages {
		m := store.Message{ID: int64(i + 1), Content: string(rune('a' + i)), Username: "u"}
		sent = append(sent, m.Content)
		done = append(done, h.broadcast(m))
	}
	for _, d := range done {
		<-d
	}
	if want := (clients - 1) * messages; delivered != want {
		t.Fatalf("delivered %d, want %d", delivered, want)
	}
	for i := 1; i < clients; i++ {
		var got []string
		for _, m := range recs[i].messages() {
			got = append(got, m.Msg)
		}
		if !slices.Equal(got, sent) {
			t.Fatalf("conn %d got %v, want %v (each once, in order)", i, got, sent)
		}
	}
	if n := len(recs[0].messages()); n != 0 || len(loading.pending) != messages {
		t.Fatalf("the loading conn got %d sent and %d held, want 0 and %d", n, len(loading.pending), messages)
	}
}

// Broadcasts made while a pass is under way go out together: a conn gets
// them in fewer writes than messages, in the order of the broadcasts, and
// everyone gets every message exactly once.
func TestBroadcastBatchesUnderLoad(t *testing.T) {
	const clients, messages = 50, 200
	h := newHub()
	release := make(chan struct{})
	recs := make([]*recorder, clients)
	for i := range clients {
		c, r := newTestConn(h)
		if i == 0 {
			first := true
			r.before = func() {
				if first {
					first = false
					<-release // a slow first pass, so the rest queue up
				}
			}
		}
		recs[i] = r
		c.goLive(nil)
	}
	var want []int64
	var done []<-chan struct{}
	for i := range messages {
		m := store.Message{ID: int64(i + 1), Content: strconv.Itoa(i), Username: "u"}
		want = append(want, m.ID)
		done = append(done, h.broadcast(m))
		if i == 0 {
			// let the first pass start before the others are queued
			time.Sleep(10 * time.Millisecond)
		}
	}
	close(release)
	for _, d := range done {
		<-d
	}
	for i, r := range recs {
		if got := r.ids(); !slices.Equal(got, want) {
			t.Fatalf("conn %d got %v, want %v", i, got, want)
		}
		if r.writeCount() >= messages {
			t.Fatalf("conn %d: %d writes for %d messages: nothing was batched", i, r.writeCount(), messages)
		}
	}
	t.Logf("%d messages reached each conn in %d writes", messages, recs[1].writeCount())
}
