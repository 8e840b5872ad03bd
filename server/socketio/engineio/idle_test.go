package engineio

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestIdleCost holds 2,000 idle WebSocket sessions and checks what they
// cost: no goroutine each, and a bounded live heap each (server side and
// the test's own client conns together).
func TestIdleCost(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 4,000 descriptors")
	}
	const n = 2000
	ts := startServer(t, Options{PingInterval: time.Hour, PingTimeout: time.Hour})
	host := strings.TrimPrefix(strings.TrimSuffix(ts.url, "/engine.io/"), "http://")
	// One connection first, so that nbio's poller and buffers exist.
	conns := []net.Conn{dialIdle(t, host)}
	ts.session(t)
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	for i := 1; i < n; i++ {
		conns = append(conns, dialIdle(t, host))
		ts.session(t)
	}
	time.Sleep(100 * time.Millisecond) // let net/http's conn goroutines end
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	g1 := runtime.NumGoroutine()
	perConn := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (n - 1)
	t.Logf("%d idle WebSocket sessions: %.0f B live heap each (server and client side), goroutines %d -> %d",
		n, perConn, g0, g1)
	if g1-g0 > 10 {
		t.Errorf("goroutines grew from %d to %d with %d idle sessions", g0, g1, n)
	}
	if perConn > 3000 {
		t.Errorf("%.0f B of live heap per idle session, bound 3000", perConn)
	}
	if ts.Count() != n {
		t.Fatal(ts.Count())
	}
	for _, c := range conns {
		c.Close()
	}
	ts.waitCount(t, 0)
}

// dialIdle opens a WebSocket session and reads its 101 and open packet
// with no buffer left behind.
func dialIdle(t *testing.T, host string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	fmt.Fprintf(c, "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		host, base64.StdEncoding.EncodeToString(k[:]))
	var buf [512]byte
	got := 0
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for !strings.Contains(string(buf[:got]), `"maxPayload"`) {
		m, err := c.Read(buf[got:])
		if err != nil {
			t.Fatalf("after %q: %v", buf[:got], err)
		}
		got += m
	}
	return c
}
