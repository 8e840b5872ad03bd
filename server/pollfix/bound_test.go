package pollfix

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zishang520/socket.io/servers/socket/v3"
)

// startBoundEngine is a real Socket.IO server of the library with a short
// heartbeat, behind BoundPolls or not.
func startBoundEngine(t *testing.T, bound bool) string {
	t.Helper()
	opts := socket.DefaultServerOptions()
	opts.SetPath("/socket.io")
	opts.SetPingInterval(300 * time.Millisecond)
	opts.SetPingTimeout(400 * time.Millisecond)
	io := socket.NewServer(nil, opts)
	var h http.Handler = io.ServeHandler(opts)
	if bound {
		h = BoundPolls(h, time.Second)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { io.Close(nil) })
	return srv.URL
}

// A client that closes its session while its next poll is on the way (what
// socket.io-client does on close) gets an answer to that poll. The library
// alone leaves about one in a hundred unanswered forever (measured with
// startBoundEngine(t, false): 2 of 200), so without BoundPolls this test
// fails in nearly every run.
func TestPollOfClosingSessionIsAnswered(t *testing.T) {
	const n = 300
	base := startBoundEngine(t, true)
	if hung := closeWhilePolling(t, base, n); hung > 0 {
		t.Fatalf("%d of %d polls sent while their session closed were not answered within 4 s", hung, n)
	}
}

// closeWhilePolling opens n sessions one after another; in each, it posts
// a CLOSE packet and a GET poll at the same moment, and counts the polls
// left without an answer for 4 s.
func closeWhilePolling(t *testing.T, base string, n int) (hung int) {
	client := &http.Client{Timeout: 4 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		u := base + "/socket.io/?EIO=4&transport=polling"
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("session %d: handshake: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := sidRE.FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("session %d: no sid in %q", i, body)
		}
		su := u + "&sid=" + m[1]
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			resp, err := client.Post(su, "text/plain;charset=UTF-8", strings.NewReader("1"))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			resp, err := client.Get(su)
			if err != nil {
				mu.Lock()
				hung++
				mu.Unlock()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
		close(start)
		if i%20 == 19 {
			wg.Wait()
		}
	}
	wg.Wait()
	return hung
}
