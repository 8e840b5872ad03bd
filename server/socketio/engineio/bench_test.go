package engineio

import (
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSendPrepared fans one Prepared out to n WebSocket sessions;
// each op is one delivery to every session. Clients drain their sockets so
// that writes complete. Per-recipient cost should be one write and no
// allocation.
func BenchmarkSendPrepared(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var lim syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(2*n+200) {
				b.Skipf("needs %d descriptors, limit %d", 2*n+200, lim.Cur)
			}
			ts := startServer(b, Options{PingInterval: time.Hour, PingTimeout: time.Hour, MaxQueued: 64 << 20})
			sessions := make([]*Session, n)
			for i := range sessions {
				c := dialWS(b, ts, "EIO=4&transport=websocket")
				go io.Copy(io.Discard, c.r)
				sessions[i] = ts.session(b)
			}
			p := Prepare(`42["message",{"user":"ann","text":"hello, world","id":123456}]`)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, s := range sessions {
					s.SendPrepared(p)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}
