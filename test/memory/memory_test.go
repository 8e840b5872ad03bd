// Package memory holds the server to its cost per idle connection: a
// server process with 2,000 idle WebSocket clients must not hold more
// live heap per connection than maxHeapPerConn, so the memory the lean
// engine won (issue 12) cannot creep back unnoticed.
package memory

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/internal/testproc"
)

const (
	conns = 2000
	// maxHeapPerConn bounds the live heap one idle WebSocket connection
	// costs the server, everything included (engine session, Socket.IO
	// socket, chat state). Measured at about 2.0-2.2 KiB with the lean
	// engine; the library it replaced needed about 20 KiB.
	maxHeapPerConn = 3 << 10
)

// TestIdleHeapPerConnection starts the server, measures its live heap,
// connects conns idle WebSocket clients that answer pings, measures
// again, and bounds the difference per connection.
func TestIdleHeapPerConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and 2,000 connections")
	}
	dir := t.TempDir()
	srv := start(t, dir)
	before := srv.liveHeap(t)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() { close(stop); wg.Wait() }()
	var opened []net.Conn
	defer func() {
		for _, c := range opened {
			c.Close()
		}
	}()
	for i := range conns {
		c, err := dialIdle(srv.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		opened = append(opened, c)
		wg.Go(func() { answerPings(c, stop) })
	}
	after := srv.liveHeap(t)
	rss := srv.rss(t)
	per := (after - before) / conns
	t.Logf("live heap %d KiB before, %d KiB with %d idle WebSocket connections: %d bytes each (bound %d); RSS %d MiB",
		before>>10, after>>10, conns, per, maxHeapPerConn, rss>>20)
	if per > maxHeapPerConn {
		t.Errorf("an idle connection costs %d bytes of live heap, more than %d", per, maxHeapPerConn)
	}
	if n := srv.metric(t, "chat_connected_sockets"); int(n) != conns {
		t.Errorf("the server counts %v connected sockets, want %d", n, conns)
	}
}

// chatd is the server process under test.
type chatd struct {
	addr string // host:port
	pid  int
	logs *testproc.Log
}

func start(t *testing.T, dir string) *chatd {
	bin, err := testproc.BuildChatd(dir)
	if err != nil {
		t.Fatal(err)
	}
	port := testproc.FreePort(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"PORT=" + strconv.Itoa(port),
		"ADDR=127.0.0.1",
		"SQLITE_PATH=" + filepath.Join(dir, "chat.db"),
		"MAX_CONNS_PER_IP=" + strconv.Itoa(2*conns),
		"LOG_LEVEL=warn",
	}
	logs := &testproc.Log{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	s := &chatd{addr: fmt.Sprintf("127.0.0.1:%d", port), pid: cmd.Process.Pid, logs: logs}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + s.addr + "/healthz"); err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy after 30 s:\n%s", logs.String())
		}
	}
}

// metrics scrapes /metrics into name{labels} → value.
func (s *chatd) metrics(t *testing.T) map[string]float64 {
	resp, err := http.Get("http://" + s.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				m[line[:i]] = v
			}
		}
	}
	return m
}

func (s *chatd) metric(t *testing.T, name string) float64 { return s.metrics(t)[name] }

// liveHeap makes the server collect garbage twice (scraping /metrics is
// the only allocation a client can cause) and returns the heap the last
// collection found live.
func (s *chatd) liveHeap(t *testing.T) int64 {
	target := s.metric(t, "go_gc_duration_seconds_count") + 2
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		m := s.metrics(t)
		if m["go_gc_duration_seconds_count"] >= target {
			return int64(m["go_gc_heap_live_bytes"])
		}
	}
	t.Fatal("the server did not collect garbage within 60 s")
	return 0
}

// rss reads the server's resident set size.
func (s *chatd) rss(t *testing.T) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// dialIdle opens an Engine.IO v4 WebSocket, joins "/" and waits for the
// history: a connected, idle chat client.
func dialIdle(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("upgrade: %v %v", resp, err)
	}
	if _, err := readText(br); err != nil { // the open packet
		c.Close()
		return nil, err
	}
	if err := writeText(c, "40"); err != nil {
		c.Close()
		return nil, err
	}
	for {
		msg, err := readText(br)
		if err != nil {
			c.Close()
			return nil, err
		}
		if strings.HasPrefix(msg, `42["load all messages"`) {
			break
		}
	}
	c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		c.Close()
		return nil, fmt.Errorf("unexpected data after the history")
	}
	return c, nil
}

// answerPings answers the server's pings until stop or the connection ends.
func answerPings(c net.Conn, stop <-chan struct{}) {
	br := bufio.NewReader(c)
	go func() { <-stop; c.SetReadDeadline(time.Now()) }()
	for {
		msg, err := readText(br)
		if err != nil {
			return
		}
		if msg == "2" {
			writeText(c, "3")
		}
	}
}

// readText reads one unfragmented server frame and returns its payload.
func readText(br *bufio.Reader) (string, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return "", err
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return "", err
		}
		n = int64(b[0])<<8 | int64(b[1])
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return "", err
		}
		n = 0
		for _, x := range b {
			n = n<<8 | int64(x)
		}
	}
	p := make([]byte, n)
	_, err := io.ReadFull(br, p)
	return string(p), err
}

// writeText writes one masked client text frame (zero mask key).
func writeText(c net.Conn, s string) error {
	if len(s) > 125 {
		return fmt.Errorf("frame too long for this helper")
	}
	b := append([]byte{0x81, 0x80 | byte(len(s)), 0, 0, 0, 0}, s...)
	_, err := c.Write(b)
	return err
}
