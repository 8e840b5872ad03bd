package server

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/chatd/chat/server/socketio/engineio"
	"github.com/chatd/chat/store"
)

// countingSocket takes deliveries and only counts them, so the benchmark
// measures the hub: the pass over the sockets, each socket's given-id check
// and lock. The write each delivery ends in is engineio's
// BenchmarkSendPrepared.
type countingSocket struct{ n atomic.Int64 }

func (s *countingSocket) Emit(string, ...any) error       { return nil }
func (s *countingSocket) EmitPrepared(*engineio.Prepared) { s.n.Add(1) }
func (s *countingSocket) Disconnect()                     {}

// BenchmarkFanout is the hub's cost of one message to 1, 100, 1,000 and
// 10,000 live sockets, encoding included; ns/op divided by the receivers
// is the cost per delivery:
//
//	go test -run '^$' -bench Fanout -benchmem ./server/
//
// Results: section "fanout" of bench/RESULTS.md (BENCH=fanout bench/run.sh).
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := newHub()
			socks := make([]*countingSocket, n)
			for i := range n {
				socks[i] = &countingSocket{}
				c := &conn{sock: socks[i], base: discardLogger()}
				h.join(c)
				c.goLive(nil)
			}
			b.ReportAllocs()
			id := int64(0)
			for b.Loop() {
				id++
				<-h.broadcast(store.Message{ID: id, Content: "hello, this is a chat message", Username: "alice"})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
			if got := socks[n-1].n.Load(); got != id {
				b.Fatalf("the last socket got %d messages, want %d", got, id)
			}
		})
	}
}
