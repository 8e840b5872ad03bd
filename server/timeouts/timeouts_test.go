package timeouts_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chat/server/timeouts"
)

// A client that announces a body and stops sending it is cut off soon
// after the body timeout; without the deadline net/http waits forever.
func TestStalledBodyIsCutOff(t *testing.T) {
	bodyErr := make(chan error, 1)
	h := timeouts.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		bodyErr <- err
	}), 300*time.Millisecond)
	srv := httptest.NewServer(h)
	defer srv.Close()

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nhello")

	select {
	case err := <-bodyErr:
		if err == nil {
			t.Fatal("the handler read a whole body that was never sent")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was still reading the stalled body after 5 s")
	}
	if !closedWithin(c, 5*time.Second) {
		t.Fatal("the server kept the connection of a stalled body open")
	}
	t.Logf("stalled body cut off after %s", time.Since(start).Round(10*time.Millisecond))
}

// Requests without a body get no read deadline: a long-poll GET that the
// handler holds longer than the body timeout is answered normally, and
// the keep-alive connection serves the next request.
func TestRequestsWithoutBodyAreNotCut(t *testing.T) {
	h := timeouts.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "late answer")
	}), 200*time.Millisecond)
	srv := httptest.NewServer(h)
	defer srv.Close()
	for i := range 2 {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "late answer" {
			t.Fatalf("request %d: got %q", i, b)
		}
	}
}

// A whole body that arrives in time is read as usual.
func TestBodyInTime(t *testing.T) {
	h := timeouts.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(b)
	}), time.Second)
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL, "text/plain", strings.NewReader("42[\"send message\",\"hi\"]"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != `42["send message","hi"]` {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}

// closedWithin reports whether the peer closes c within d, discarding
// whatever it sends first (an error response).
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, bufio.NewReader(c))
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
