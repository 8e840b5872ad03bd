package loadgen

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store/sqlite"
)

func TestCheckLoopback(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:3000", "http://localhost:3500", "http://[::1]:3000", "ws://127.0.0.2:80"} {
		if err := CheckLoopback(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.0.0.1:3000", "http://example.com:80", "http://0.0.0.0:3000",
		"https://127.0.0.1:3000", "http://127.0.0.1", "http://[::2]:3000", "http://localhost.example.com:3000"} {
		if err := CheckLoopback(u); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
}

func TestFrames(t *testing.T) {
	var wire []byte
	sizes := []int{0, 1, 125, 126, 300, 65535, 65536, 100000}
	for _, n := range sizes {
		// Server frames are unmasked: build them by hand.
		p := bytes.Repeat([]byte{'x'}, n)
		f := []byte{0x81}
		switch {
		case n < 126:
			f = append(f, byte(n))
		case n <= 0xFFFF:
			f = append(f, 126, byte(n>>8), byte(n))
		default:
			f = append(f, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		}
		wire = append(wire, append(f, p...)...)
	}
	// Fed a byte at a time, every prefix parses to the frames it holds.
	var got []int
	buf := []byte{}
	for _, b := range wire {
		buf = append(buf, b)
		used, err := parseFrames(buf, func(fin bool, op byte, p []byte) error {
			if !fin || op != opText {
				t.Fatalf("fin %v op %d", fin, op)
			}
			got = append(got, len(p))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		buf = buf[used:]
	}
	if len(buf) != 0 || len(got) != len(sizes) {
		t.Fatalf("left %d bytes, frames %v", len(buf), got)
	}
	for i := range sizes {
		if got[i] != sizes[i] {
			t.Fatalf("frame %d: %d bytes, want %d", i, got[i], sizes[i])
		}
	}
	// A masked client frame unmasks to its payload.
	mask := [4]byte{1, 2, 3, 4}
	f := appendFrame(nil, opText, []byte("42[\"hello\"]"), mask)
	if f[1]&0x80 == 0 {
		t.Fatal("client frame not masked")
	}
	p := f[6:]
	for i := range p {
		p[i] ^= mask[i&3]
	}
	if string(p) != `42["hello"]` {
		t.Fatalf("unmasked %q", p)
	}
}

func TestHist(t *testing.T) {
	var h Hist
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{.5, 500 * time.Millisecond}, {.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.Quantile(c.q)
		if d := got - c.want; d < -c.want/50 || d > c.want/50 {
			t.Errorf("q%.2f = %v, want %v ±2%%", c.q, got, c.want)
		}
	}
	if h.Max() != time.Second {
		t.Errorf("max %v", h.Max())
	}
	for i := 0; i < 5000; i++ { // every bucket index is in range
		histIndex(uint64(i) * 7919 * 7919)
	}
	histIndex(1 << 63)
}

func TestReadProc(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.HWM < s.RSS {
		t.Fatalf("rss %d hwm %d", s.RSS, s.HWM)
	}
}

// startServer runs this project's Go server in the test process on a
// fresh SQLite store and returns its URL.
func startServer(t *testing.T) string {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := server.New(server.Config{BcryptCost: 4}, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return "http://" + ln.Addr().String()
}

// TestRunAgainstServer is the whole generator against the real server:
// WebSocket and polling clients, with and without send acknowledgements,
// and every delivery accounted for.
func TestRunAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	url := startServer(t)
	for _, ack := range []bool{true, false} {
		res, err := Run(context.Background(), Config{
			URL: url, Clients: 40, Senders: 3, Rate: 40, Messages: 40, Duration: 5 * time.Second,
			Drain: 10 * time.Second, Settle: 100 * time.Millisecond, Polling: 0.25, Ack: ack, XFF: true,
			ServerPID: os.Getpid(), MaxRun: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK {
			t.Fatalf("ack=%v: problems %v, errors %v", ack, res.Problems, res.FirstErrors)
		}
		if res.Delivered != 40*40 || res.Expected != 40*40 || res.Missing != 0 || res.PollingClients != 9 {
			t.Fatalf("ack=%v: delivered %d expected %d missing %d polling %d", ack, res.Delivered, res.Expected, res.Missing, res.PollingClients)
		}
		if ack && (res.Ack == nil || res.AcksOK != 40) {
			t.Fatalf("acks %d", res.AcksOK)
		}
		if res.PingIntervalMs <= 0 || res.PingTimeoutMs <= 0 {
			t.Fatalf("heartbeat not recorded: %d/%d", res.PingIntervalMs, res.PingTimeoutMs)
		}
		if res.Fanout.N != 40 || res.Fanout.P50 <= 0 || res.Fanout.Max < res.Fanout.P99 {
			t.Fatalf("fanout %+v", res.Fanout)
		}
		var tbl strings.Builder
		res.WriteTable(&tbl)
		if !strings.Contains(tbl.String(), "1600 of 1600") {
			t.Fatalf("table:\n%s", tbl.String())
		}
	}
	res, err := Run(context.Background(), Config{URL: url, Clients: 30, Idle: true, Hold: 300 * time.Millisecond,
		Settle: 100 * time.Millisecond, Polling: 0.2, MaxRun: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Idle == nil || res.Idle.Alive != 30 {
		t.Fatalf("idle: %+v %v", res.Idle, res.Problems)
	}
}

func TestRefusesRemote(t *testing.T) {
	_, err := Run(context.Background(), Config{URL: "http://192.0.2.1:3000", Clients: 1, Idle: true})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err %v", err)
	}
}
