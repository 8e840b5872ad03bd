package server

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/store"
)

// A broadcast to a room big enough to be split over goroutines reaches
// every live client exactly once, holds messages for clients still
// loading their history, and consecutive broadcasts reach each client in
// the order they were made.
func TestBroadcastToManyClients(t *testing.T) {
	const clients, messages = 3*fanoutChunk + 7, 20
	h := newHub()
	var delivered int
	h.onDeliver = func(n int) { delivered += n }
	h.encode = func(payload any) encoded {
		return encoded{frame: []byte(payload.(wireMessage).Msg)}
	}
	got := make([][]string, clients)
	var mu sync.Mutex // guards got across the delivering goroutines
	var loading *client
	for i := range clients {
		c := &client{sendEncoded: func(e encoded) {
			mu.Lock()
			got[i] = append(got[i], string(e.frame))
			mu.Unlock()
		}}
		h.join(c)
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
		if len(got[i]) != messages {
			t.Fatalf("client %d got %d messages, want %d", i, len(got[i]), messages)
		}
		for j := range got[i] {
			if got[i][j] != sent[j] {
				t.Fatalf("client %d: message %d is %q, want %q (order)", i, j, got[i][j], sent[j])
			}
		}
	}
	if len(got[0]) != 0 || len(loading.pending) != messages {
		t.Fatalf("the loading client got %d sent and %d held, want 0 and %d", len(got[0]), len(loading.pending), messages)
	}
}

// Broadcasts made while a pass is under way go out together: a client on
// our transport gets them in fewer writes than messages, each write the
// frames back to back in the order of the broadcasts, and everyone gets
// every message exactly once.
func TestBroadcastBatchesUnderLoad(t *testing.T) {
	const clients, messages = 50, 200
	h := newHub()
	var mu sync.Mutex // guards delivered across the delivering goroutines
	var delivered int
	h.onDeliver = func(n int) { mu.Lock(); delivered += n; mu.Unlock() }
	h.encode = func(payload any) encoded {
		return encoded{frame: []byte(payload.(wireMessage).Msg + ";")}
	}
	release := make(chan struct{})
	writes := make([][]string, clients)
	for i := range clients {
		c := &client{
			sendEncoded: func(encoded) { t.Error("a socket on our transport was sent packets") },
			sendFrames: func(frames []byte) bool {
				if i == 0 {
					<-release // a slow first pass, so the rest queue up
				}
				mu.Lock()
				writes[i] = append(writes[i], string(frames))
				mu.Unlock()
				return true
			},
		}
		h.join(c)
		c.goLive(nil)
	}
	var want strings.Builder
	var done []<-chan struct{}
	for i := range messages {
		m := store.Message{ID: int64(i + 1), Content: strconv.Itoa(i), Username: "u"}
		want.WriteString(m.Content + ";")
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
	if delivered != clients*messages {
		t.Fatalf("delivered %d, want %d", delivered, clients*messages)
	}
	for i, w := range writes {
		if got := strings.Join(w, ""); got != want.String() {
			t.Fatalf("client %d got %q, want %q", i, got, want.String())
		}
		if len(w) >= messages {
			t.Fatalf("client %d: %d writes for %d messages: nothing was batched", i, len(w), messages)
		}
	}
	t.Logf("%d messages reached each client in %d writes", messages, len(writes[1]))
}
