package server

import (
	"sync"
	"testing"

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
	for i := range messages {
		m := store.Message{ID: int64(i + 1), Content: string(rune('a' + i)), Username: "u"}
		sent = append(sent, m.Content)
		h.broadcast(m)
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
