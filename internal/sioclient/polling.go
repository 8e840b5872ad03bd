package sioclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// pollTransport is Engine.IO v4 over HTTP long-polling, as engine.io-client
// does it: one GET at a time brings the server's packets, one POST at a time
// carries the client's (whatever queued up while the previous POST was out,
// in one payload); packets in a payload are separated by \x1e.
type pollTransport struct {
	client  *http.Client
	hc      *http.Transport
	url     string // .../socket.io/?EIO=4&transport=polling&sid=…
	header  http.Header
	timeout time.Duration // Options.RequestTimeout

	// Reader side, used by one goroutine at a time (the handshake, then
	// the connection's reader).
	queue   []string        // packets received and not yet read
	pending chan pollResult // the GET in flight, if any

	mu      sync.Mutex
	out     []string // packets waiting for the next POST
	wake    chan struct{}
	closing bool
	err     error         // why the transport broke; nil after a plain close
	closed  chan struct{} // closed when closing starts
}

type pollResult struct {
	body string
	err  error
}

const recordSep = "\x1e"

func dialPolling(ctx context.Context, base string, opts Options) (*pollTransport, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	u.Path = "/socket.io/"
	u.RawQuery = "EIO=4&transport=polling"
	dial := (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	if opts.LocalAddr != "" {
		nd, err := localDialer(opts.LocalAddr)
		if err != nil {
			return nil, err
		}
		dial = nd.DialContext
	}
	// A browser keeps a few connections per site; two are in use here (a
	// GET and a POST), plus requests left behind by a connection that died.
	hc := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}
	t := &pollTransport{
		client:  &http.Client{Transport: hc},
		hc:      hc,
		url:     u.String(),
		header:  opts.Header,
		timeout: opts.RequestTimeout,
		wake:    make(chan struct{}, 1),
		closed:  make(chan struct{}),
	}
	ch := make(chan pollResult, 1)
	go func() {
		body, err := t.do(http.MethodGet, t.url, "")
		ch <- pollResult{body, err}
	}()
	var r pollResult
	select {
	case r = <-ch:
	case <-ctx.Done():
		// The handshake request stays out, as a browser's would; if it is
		// answered after all, close the session it opened.
		go func() {
			if r := <-ch; r.err == nil {
				if sid := openSID(r.body); sid != "" {
					t.do(http.MethodPost, t.url+"&sid="+url.QueryEscape(sid), "1")
				}
			}
			hc.CloseIdleConnections()
		}()
		return nil, fmt.Errorf("sioclient: polling handshake: %w", ctx.Err())
	}
	if r.err != nil {
		hc.CloseIdleConnections()
		return nil, fmt.Errorf("sioclient: polling handshake: %w", r.err)
	}
	sid := openSID(r.body)
	if sid == "" {
		hc.CloseIdleConnections()
		return nil, fmt.Errorf("sioclient: polling handshake: no engine.io open packet in %.60q", r.body)
	}
	t.url += "&sid=" + url.QueryEscape(sid)
	t.queue = strings.Split(r.body, recordSep)
	go t.writeLoop()
	return t, nil
}

// openSID returns the Engine.IO session id of the open packet that begins
// payload, or "".
func openSID(payload string) string {
	first, _, _ := strings.Cut(payload, recordSep)
	if !strings.HasPrefix(first, "0") {
		return ""
	}
	var open struct{ SID string }
	json.Unmarshal([]byte(first[1:]), &open)
	return open.SID
}

// do sends one request and returns the body of a 200 answer. Only
// RequestTimeout ends it early: see Options.RequestTimeout.
func (t *pollTransport) do(method, url, body string) (string, error) {
	ctx := context.Background()
	if t.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.timeout)
		defer cancel()
	}
	var rd io.Reader
	if method == http.MethodPost {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return "", err
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", method, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", fmt.Errorf("%s: reading the answer: %w", method, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s %.100q", method, resp.Status, b)
	}
	return string(b), nil
}

var errSilence = errors.New("sioclient: no packet from the server in time")

func (t *pollTransport) read(deadline time.Time) (string, error) {
	for len(t.queue) == 0 {
		if t.pending == nil {
			ch := make(chan pollResult, 1)
			t.pending = ch
			go func() {
				body, err := t.do(http.MethodGet, t.url, "")
				ch <- pollResult{body, err}
				t.release()
			}()
		}
		var timeout <-chan time.Time
		var tm *time.Timer
		if !deadline.IsZero() {
			tm = time.NewTimer(time.Until(deadline))
			timeout = tm.C
		}
		var r pollResult
		var err error
		select {
		case r = <-t.pending:
			t.pending = nil
			err = r.err
		case <-timeout:
			// The GET stays out (see Options.RequestTimeout).
			err = errSilence
		case <-t.closed:
			err = t.closeErr()
		}
		if tm != nil {
			tm.Stop()
		}
		if err != nil {
			t.fail(err)
			return "", err
		}
		t.queue = strings.Split(r.body, recordSep)
	}
	p := t.queue[0]
	t.queue = t.queue[1:]
	return p, nil
}

// write queues pkt for the writer goroutine, which sends it with whatever
// else is queued by then. A failed POST breaks the transport: the reader
// then ends the connection. Once the transport is closing, the writer sends
// Engine.IO's close packet, as engine.io-client does whenever its socket
// closes (on Close, a silent server, or a failed request).
func (t *pollTransport) write(pkt string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return t.closeErrLocked()
	}
	t.out = append(t.out, pkt)
	select {
	case t.wake <- struct{}{}:
	default:
	}
	return nil
}

func (t *pollTransport) writeLoop() {
	defer t.release()
	for {
		t.mu.Lock()
		batch, closing, broken := t.out, t.closing, t.err != nil
		t.out = nil
		t.mu.Unlock()
		if broken {
			batch = nil // the connection has ended: only say goodbye
		}
		if closing {
			batch = append(batch, "1")
		}
		if len(batch) > 0 {
			body, err := t.do(http.MethodPost, t.url, strings.Join(batch, recordSep))
			if err == nil && body != "ok" {
				err = fmt.Errorf("POST: unexpected answer %.60q", body)
			}
			if err != nil {
				t.fail(err)
				if !closing {
					continue // say goodbye
				}
			}
		}
		if closing {
			return
		}
		select {
		case <-t.wake:
		case <-t.closed:
		}
	}
}

// fail breaks the transport with err (the first error wins).
func (t *pollTransport) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil && !t.closing {
		t.err = err
	}
	t.startClosingLocked()
}

func (t *pollTransport) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.startClosingLocked()
}

func (t *pollTransport) startClosingLocked() {
	if !t.closing {
		t.closing = true
		close(t.closed)
	}
}

func (t *pollTransport) closeErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closeErrLocked()
}

func (t *pollTransport) closeErrLocked() error {
	if t.err != nil {
		return t.err
	}
	return ErrClosed
}

// release lets go of idle connections once the transport is closing and
// nothing is left to send; requests still out keep theirs.
func (t *pollTransport) release() {
	t.mu.Lock()
	closing := t.closing
	t.mu.Unlock()
	if closing {
		t.hc.CloseIdleConnections()
	}
}
