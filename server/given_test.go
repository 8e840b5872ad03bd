package server

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/chatd/chat/store"
)

func TestGivenIDs(t *testing.T) {
	var g givenIDs
	for _, id := range []int64{10, 11, 13, 14} { // 12 burned or late
		if !g.add(id) {
			t.Fatalf("add(%d) on first sight = false", id)
		}
	}
	for _, id := range []int64{10, 11, 13, 14} {
		if g.add(id) || !g.has(id) {
			t.Errorf("id %d given twice", id)
		}
	}
	if g.has(12) || !g.add(12) || g.add(12) {
		t.Errorf("late id 12 (lower than the highest given) not let through exactly once")
	}
	if g.has(9) || !g.add(9) || g.add(9) {
		t.Errorf("id 9, below everything given, not let through exactly once")
	}
	if !g.add(20) || g.add(20) || !g.add(17) || g.add(17) {
		t.Errorf("ids after a jump not let through exactly once")
	}
	if want := []gap{{15, 16}, {18, 19}}; !slices.Equal(g.gaps, want) {
		t.Errorf("gaps %v, want %v", g.gaps, want)
	}
}

// TestGivenIDsFarApartSenders is the interleaving that failed CI once in
// many runs when gaps were kept id by id: a socket's history ends at 10,
// one sender is already at 300 while another is still at 12, and both
// announce 12. A gap costs the same whatever its length, so 11-299 is one
// gap, not 289 ids past the bound, and 12 is let through once.
func TestGivenIDsFarApartSenders(t *testing.T) {
	var g givenIDs
	for id := int64(1); id <= 10; id++ {
		g.add(id)
	}
	if !g.add(300) || !g.add(12) || g.add(12) || g.add(9) || !g.add(299) || !g.add(11) {
		t.Fatalf("ids not let through exactly once; gaps %v", g.gaps)
	}
	if want := []gap{{13, 298}}; !slices.Equal(g.gaps, want) {
		t.Errorf("gaps %v, want %v", g.gaps, want)
	}
	// Another jump, far ahead: still one gap, and the history is kept.
	if !g.add(100_000) || g.add(5) || g.add(300) || len(g.gaps) != 2 {
		t.Errorf("after a jump to 100000: gaps %v, history or 300 forgotten", g.gaps)
	}
}

// TestGivenIDsAnyOrder: whatever the order of ids and however often each
// comes, each is let through exactly once, as long as the ids a socket has
// not been given below its highest stay within maxGaps runs. Ids come from
// up to four senders at once, each in order from its own starting point
// (servers, the relay, resends), interleaved at random.
func TestGivenIDsAnyOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for run := range 2000 {
		n := 1 + r.IntN(300)
		base := int64(1 + r.IntN(1000))
		burned := map[int64]bool{}
		for i := range n {
			burned[base+int64(i)] = r.IntN(10) == 0
		}
		// Each sender goes through the ids in order from its own start,
		// announcing some twice.
		senders := make([][]int64, 1+r.IntN(4))
		for s := range senders {
			for i := r.IntN(n); i < n; i++ {
				if id := base + int64(i); !burned[id] {
					for range 1 + r.IntN(2) {
						senders[s] = append(senders[s], id)
					}
				}
			}
		}
		senders = slices.DeleteFunc(senders, func(s []int64) bool { return len(s) == 0 })
		var arrivals []int64
		for len(senders) > 0 {
			s := r.IntN(len(senders))
			arrivals = append(arrivals, senders[s][0])
			if senders[s] = senders[s][1:]; len(senders[s]) == 0 {
				senders = slices.Delete(senders, s, s+1)
			}
		}
		// Local reordering: late commits.
		for i := range arrivals {
			if j := i + r.IntN(20) - 10; j >= 0 && j < len(arrivals) {
				arrivals[i], arrivals[j] = arrivals[j], arrivals[i]
			}
		}
		var g givenIDs
		passed := map[int64]int{}
		for _, id := range arrivals {
			if g.add(id) {
				passed[id]++
			}
		}
		for _, id := range arrivals {
			if passed[id] != 1 {
				t.Fatalf("run %d: id %d let through %d times (arrivals %v)", run, id, passed[id], arrivals)
			}
		}
		if len(g.gaps) > maxGaps {
			t.Fatalf("run %d: %d gaps kept, bound %d", run, len(g.gaps), maxGaps)
		}
	}
}

// TestGivenIDsBounded: memory stays bounded however the ids come, and
// past the bound the set errs towards letting a message through, never
// towards dropping one it was not given.
func TestGivenIDsBounded(t *testing.T) {
	var g givenIDs
	given := map[int64]bool{}
	r := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		id := int64(1 + r.IntN(1_000_000))
		if !given[id] && !g.add(id) {
			t.Fatalf("id %d refused but never given", id)
		}
		given[id] = true
		if len(g.gaps) > maxGaps {
			t.Fatalf("%d gaps, bound %d", len(g.gaps), maxGaps)
		}
	}
	// A typical socket: a history of 100 with a few burned ids, then live.
	var typical givenIDs
	for id := int64(1000); id < 1100; id++ {
		if id%37 != 0 {
			typical.add(id)
		}
	}
	for id := int64(1100); id < 5000; id++ {
		typical.add(id)
	}
	size := int(unsafe.Sizeof(typical)) + int(unsafe.Sizeof(gap{}))*cap(typical.gaps)
	t.Logf("a socket after a history of 100 (2 burned ids) and 3,900 live messages keeps %d bytes of ids", size)
	if size > 256 {
		t.Errorf("typical socket keeps %d bytes, want a few dozen", size)
	}
}

// liveClient is a conn on h recording the ids it is given.
func liveClient(h *hub) (*conn, func() []int64) {
	c, r := newTestConn(h)
	return c, r.ids
}

func msgs(ids ...int64) []store.Message {
	out := make([]store.Message, len(ids))
	for i, id := range ids {
		out[i] = store.Message{ID: id, Content: "m", Username: "u"}
	}
	return out
}

func broadcastAll(h *hub, ms []store.Message) {
	var done []<-chan struct{}
	for _, m := range ms {
		done = append(done, h.broadcast(m))
	}
	for _, d := range done {
		<-d
	}
}

// TestSocketNeverGivenAnIDTwice plays issue 14's interleavings through the
// hub: a socket is never given an id twice, and is given every id its
// history lacked, whatever the order.
func TestSocketNeverGivenAnIDTwice(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprint("batched=", batched), func(t *testing.T) {
			h := newHub()
			c, got := liveClient(h)
			// One broadcast at a time, or each group in one pass.
			send := func(ms []store.Message) {
				for _, m := range ms {
					<-h.broadcast(m)
				}
			}
			if batched {
				send = func(ms []store.Message) { broadcastAll(h, ms) }
			}
			// While the history loads: 300 (in it) and 303 (committed
			// after the read) arrive.
			send(msgs(300, 303))
			// The history: 299-302, without 298 (allotted, not yet
			// committed).
			history := msgs(297, 299, 300, 301, 302)
			c.goLive(history)
			// After going live: the sender's resend of 302 through
			// this server (the server that stored it died before
			// announcing it); a bus event for 301 arriving after the
			// history; the late 298; 303 again from a resync; a batch
			// mixing repeats and new ids.
			send(msgs(302))
			send(msgs(301))
			send(msgs(298))
			send(msgs(303, 304))
			send(msgs(305, 299, 306, 305, 307))
			// A page of older messages, then one of them live; a
			// late one live, then a page that holds it.
			if p := c.givePage(msgs(290, 291, 293)); len(p) != 3 {
				t.Fatalf("page cut to %v", p)
			}
			send(msgs(291, 292))
			send(msgs(285))
			if p := c.givePage(msgs(284, 285, 286)); len(p) != 2 || p[0].ID != 284 || p[1].ID != 286 {
				t.Fatalf("page %v, want 284 and 286 (285 was given live)", p)
			}
			want := []int64{303, 298, 304, 305, 306, 307, 292, 285}
			if g := got(); !slices.Equal(g, want) {
				t.Fatalf("socket given %v live, want %v (history %v)", g, want, []int64{297, 299, 300, 301, 302})
			}
		})
	}
}

// TestSocketOnceUnderConcurrentBroadcasts: broadcasts from many goroutines
// (local sends, the relay) with repeats, a socket joining in the middle:
// every socket gets each id exactly once, counting its history.
func TestSocketOnceUnderConcurrentBroadcasts(t *testing.T) {
	h := newHub()
	early, gotEarly := liveClient(h)
	early.goLive(nil)
	const n = 400
	var wg sync.WaitGroup
	var late *conn
	var gotLate func() []int64
	var lateHistory []store.Message
	for w := range 4 {
		wg.Go(func() {
			for i := range n {
				id := int64(i + 1)
				h.broadcast(msgs(id)[0])
				if i%7 == w {
					<-h.broadcast(msgs(id)[0]) // announced twice
				}
			}
		})
	}
	wg.Go(func() {
		late, gotLate = liveClient(h)
		lateHistory = msgs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
		late.goLive(lateHistory)
	})
	wg.Wait()
	broadcastAll(h, nil)
	<-h.broadcast(msgs(n + 1)[0])
	check := func(name string, ids []int64, history []store.Message) {
		seen := map[int64]int{}
		for _, m := range history {
			seen[m.ID]++
		}
		for _, id := range ids {
			seen[id]++
		}
		for id := int64(1); id <= n+1; id++ {
			if seen[id] != 1 && !(name == "late" && seen[id] == 0) {
				t.Errorf("%s: id %d given %d times", name, id, seen[id])
			}
		}
		if seen[n+1] != 1 {
			t.Errorf("%s: last id missing", name)
		}
	}
	check("early", gotEarly(), nil)
	check("late", gotLate(), lateHistory)
}
