package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Clients that start on HTTP long-polling, as the stock socket.io `io()`
// client does: Engine.IO v4 over GET (the server's packets, separated by
// \x1e) and POST (ours, the same). Transport "polling" stays there;
// "upgrade" then upgrades to WebSocket exactly as engine.io-client 6 does:
//
//  1. right after the Engine.IO open, the Socket.IO CONNECT (`40`) goes
//     out by POST and, at the same time, a WebSocket is opened on the same
//     sid (the probe) and sends `2probe`;
//  2. on `3probe` the client pauses polling: it holds every packet it
//     would send, waits for the GET in flight to return (the server
//     releases it with a noop) and for any POST in flight;
//  3. it sends `5` (upgrade) on the WebSocket, which from then on carries
//     everything, held packets first.
//
// A probe that fails before `3probe` leaves the client on polling, as
// engine.io-client does (upgradeError). One that fails after it leaves the
// client paused with nothing to send or receive on, again as
// engine.io-client does: the page stalls until its ping timeout. Both are
// counted (Result.Upgrade) with the reason, and the time any packet was
// held is measured (Result.EventWait).
//
// The polling side uses net/http and a goroutine per client: it costs the
// generator tens of µs per HTTP exchange, which is the price of polling
// for every party. Once upgraded, a client is on the event loop like a
// direct WebSocket one.

// probeTimeout bounds the wait for `3probe` (engine.io-client has none;
// the socket would hang until the Engine.IO ping timeout).
const probeTimeout = 10 * time.Second

// poller is the HTTP long-polling transport of one client.
type poller struct {
	c      *client
	url    string // base URL with EIO and transport; sid appended after open
	ctx    context.Context
	cancel context.CancelFunc
	body   bytes.Buffer
}

func (p *poller) do(ctx context.Context, method string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	if p.c.r.cfg.XFF {
		req.Header.Set("X-Forwarded-For", p.c.xff())
	}
	resp, err := p.c.r.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p.body.Reset()
	_, err = p.body.ReadFrom(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d: %.100q", method, resp.StatusCode, p.body.Bytes())
	}
	return p.body.Bytes(), nil
}

func (p *poller) get() ([]byte, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.c.silence)
	defer cancel()
	return p.do(ctx, http.MethodGet, nil)
}

// post sends one payload. Its answer ("ok") is not needed; its own buffer
// keeps the GET's packets intact.
func (p *poller) post(body []byte) error {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	q := &poller{c: p.c, url: p.url, ctx: p.ctx}
	_, err := q.do(ctx, http.MethodPost, body)
	return err
}

// connectPolling opens the Engine.IO session by polling, starts the GET
// loop, sends CONNECT, probes the upgrade (transport upgrade), and
// returns once the Socket.IO CONNECT answer has come (on either
// transport).
func (c *client) connectPolling(ctx context.Context) error {
	pctx, cancel := context.WithCancel(c.r.ctx)
	p := &poller{c: c, url: c.t.pollURL, ctx: pctx, cancel: cancel}
	c.poll = p
	c.connCh = make(chan struct{})
	c.getDone = make(chan struct{})
	c.silence = 20 * time.Second
	c.openedAt = time.Now()
	hctx, hcancel := context.WithTimeout(ctx, 20*time.Second)
	defer hcancel()
	open, err := p.do(hctx, http.MethodGet, nil)
	if err != nil {
		close(c.getDone)
		return fmt.Errorf("polling open: %w", err)
	}
	// The open packet may share its payload with others (it does not
	// today); the first is the open.
	first, rest, _ := bytes.Cut(open, []byte{0x1e})
	hs, err := c.setSilence(first)
	if err != nil {
		close(c.getDone)
		return err
	}
	p.url += "&sid=" + hs.SID
	for _, pkt := range bytes.Split(rest, []byte{0x1e}) {
		if _, err := c.handle(pkt); err != nil {
			close(c.getDone)
			return err
		}
	}
	c.r.readers.Add(1)
	go func() {
		defer c.r.readers.Done()
		err := c.readLoopPolling()
		c.getErr = err
		close(c.getDone)
		if err != nil {
			c.r.onDead(c, err)
		}
	}()
	if err := c.send([]byte("40")); err != nil {
		return fmt.Errorf("polling connect: %w", err)
	}
	if c.upgrade {
		c.probe(ctx, hs)
	}
	select {
	case <-c.connCh:
		return nil
	case <-c.getDone:
		if c.getErr != nil {
			return fmt.Errorf("polling connect: %w", c.getErr)
		}
		// Paused for the upgrade: CONNECT comes on the WebSocket.
	case <-ctx.Done():
		return fmt.Errorf("polling connect: no CONNECT answer: %w", ctx.Err())
	}
	select {
	case <-c.connCh:
		return nil
	case <-ctx.Done():
		c.life.Lock()
		why := c.deathErr
		c.life.Unlock()
		if why != nil {
			return fmt.Errorf("connect: %w", why)
		}
		return fmt.Errorf("connect: no CONNECT answer after the upgrade: %w", ctx.Err())
	}
}

func (c *client) onWSNow() bool {
	c.omu.Lock()
	defer c.omu.Unlock()
	return c.onWS
}

func (c *client) onConnect() {
	if c.connCh != nil {
		c.connOnce.Do(func() { c.connAt = time.Now(); close(c.connCh) })
	}
}

// errPaused ends the GET loop of a client whose upgrade paused polling.
var errPaused = errors.New("polling paused for the upgrade")

// readLoopPolling is the GET loop: one long-poll at a time, its packets
// handled in order, pongs sent back by POST (or held, while pausing). It
// returns nil when the upgrade pauses it.
func (c *client) readLoopPolling() error {
	p := c.poll
	for {
		c.omu.Lock()
		paused := c.pausing || c.onWS
		c.omu.Unlock()
		if paused {
			return nil
		}
		body, err := p.get()
		if err != nil {
			return err
		}
		for len(body) > 0 {
			pkt := body
			if i := bytes.IndexByte(body, 0x1e); i >= 0 {
				pkt, body = body[:i], body[i+1:]
			} else {
				body = nil
			}
			reply, err := c.handle(pkt)
			if err != nil {
				return err
			}
			if reply != nil {
				if err := c.send(reply); err != nil {
					return err
				}
			}
		}
	}
}

var payloadSep = []byte{0x1e}

// send writes one Engine.IO packet: on the WebSocket for WebSocket
// clients and upgraded ones; otherwise it is queued for a POST (sent at
// once if none is in flight), or held while the upgrade pauses polling.
func (c *client) send(p []byte) error {
	if c.poll == nil {
		return c.writeText(p)
	}
	now := c.r.now()
	c.omu.Lock()
	if c.onWS {
		c.omu.Unlock()
		return c.writeText(p)
	}
	c.outq = append(c.outq, bytes.Clone(p))
	c.outAt = append(c.outAt, now)
	if c.posting || c.pausing {
		c.omu.Unlock()
		return nil
	}
	c.posting = true
	c.omu.Unlock()
	return c.drainPosts()
}

// drainPosts is run by the one poster: it POSTs everything queued, all
// packets of a turn in one payload, until the queue is empty or the
// upgrade pauses polling.
func (c *client) drainPosts() error {
	for {
		c.omu.Lock()
		if len(c.outq) == 0 || c.pausing || c.onWS {
			c.posting = false
			c.omu.Unlock()
			return nil
		}
		q, at := c.outq, c.outAt
		c.outq, c.outAt = nil, nil
		c.omu.Unlock()
		c.r.noteWaits(at)
		if err := c.poll.post(bytes.Join(q, payloadSep)); err != nil {
			c.omu.Lock()
			c.posting = false
			c.omu.Unlock()
			return fmt.Errorf("polling send: %w", err)
		}
	}
}

// noteWaits records how long packets queued at the times in at waited
// before going on the wire.
func (r *run) noteWaits(at []int64) {
	now := r.now()
	for _, t := range at {
		d := now - t
		r.waitN.Add(1)
		if time.Duration(d) > time.Second {
			r.waitOver1s.Add(1)
		}
		for {
			m := r.waitMax.Load()
			if d <= m || r.waitMax.CompareAndSwap(m, d) {
				break
			}
		}
	}
}

// probe is engine.io-client's upgrade: WebSocket on the same sid,
// `2probe`, `3probe`, pause polling, `5`. It returns when the client is
// upgraded or the attempt has failed (counted either way).
func (c *client) probe(ctx context.Context, hs handshakeInfo) {
	r := c.r
	r.upgAttempted.Add(1)
	fail := func(stage string, err error) {
		key := stage
		if err != nil {
			key += ": " + reasonKey(err)
		}
		r.noteUpgradeFailure(key, fmt.Errorf("client %d: %s: %v", c.idx, stage, err))
	}
	if !bytes.Contains(hs.Upgrades, []byte(`"websocket"`)) {
		fail("no websocket upgrade offered", fmt.Errorf("upgrades %s", hs.Upgrades))
		return
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := r.dialContext(pctx, "tcp", c.t.hostport)
	if err != nil {
		fail("probe dial", err)
		return
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	dl, _ := pctx.Deadline()
	conn.SetDeadline(dl)
	rest, err := c.upgradeTo(conn, r.wsPath+"&sid="+hs.SID)
	if err != nil {
		fail("probe handshake", err)
		return
	}
	if _, err := conn.Write(appendFrame(nil, opText, []byte("2probe"), maskKey())); err != nil {
		fail("probe write", err)
		return
	}
	hr := &handshakeReader{conn: conn, buf: rest}
	pkt, err := hr.next()
	if err != nil {
		if isTimeout(err) {
			fail("probe: no 3probe", fmt.Errorf("within %s", probeTimeout))
		} else {
			fail("probe closed before 3probe", err)
		}
		return
	}
	if string(pkt) != "3probe" {
		fail("probe: unexpected packet", fmt.Errorf("%.60q instead of 3probe", pkt))
		return
	}

	// Pause polling: hold new packets, wait for the GET and POST in flight.
	c.omu.Lock()
	c.pausing = true
	c.omu.Unlock()
	pauseDeadline := time.Now().Add(c.silence)
	stall := func(stage string, err error) {
		fail("after 3probe, "+stage, err)
		r.upgStalled.Add(1)
		c.stallUntilTimeout(hs, stage)
	}
	select {
	case <-c.getDone:
		if c.getErr != nil {
			stall("polling failed while pausing", c.getErr)
			return
		}
	case <-time.After(time.Until(pauseDeadline)):
		stall("poll not released", fmt.Errorf("the GET in flight did not return within %s", c.silence))
		return
	case <-r.ctx.Done():
		return
	}
	for {
		c.omu.Lock()
		busy := c.posting
		c.omu.Unlock()
		if !busy {
			break
		}
		if time.Now().After(pauseDeadline) {
			stall("POST not done", fmt.Errorf("the POST in flight did not end within %s", c.silence))
			return
		}
		time.Sleep(time.Millisecond)
	}
	// The probe may have been closed meanwhile: a read that finds EOF or
	// an error says so (nothing else is sent on it before `5`).
	conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	if len(hr.buf) == 0 {
		var one [1]byte
		if n, err := conn.Read(one[:]); n > 0 {
			hr.buf = append(hr.buf, one[:n]...)
		} else if err != nil && !isTimeout(err) {
			stall("probe closed while pausing", err)
			return
		}
	}
	conn.SetDeadline(time.Time{})
	if _, err := conn.Write(appendFrame(nil, opText, []byte("5"), maskKey())); err != nil {
		stall("upgrade packet write", err)
		return
	}
	fd, err := detach(conn)
	if err != nil {
		stall("detach", err)
		return
	}
	ok = true
	c.fd = fd
	c.pend = hr.buf
	r.loops[c.idx%len(r.loops)].add(c)
	// Everything held goes out on the WebSocket, in order, before any
	// later packet.
	c.omu.Lock()
	c.onWS, c.pausing = true, false
	q, at := c.outq, c.outAt
	c.outq, c.outAt = nil, nil
	r.noteWaits(at)
	var werr error
	for _, p := range q {
		if werr = c.writeText(p); werr != nil {
			break
		}
	}
	c.omu.Unlock()
	if werr != nil {
		r.noteErr("upgrade", fmt.Errorf("client %d: writing held packets after the upgrade: %w", c.idx, werr))
	}
	r.upgCompleted.Add(1)
	r.upgradeTime.Record(time.Since(c.openedAt))
}

// stallUntilTimeout is what engine.io-client does when the probe fails
// after `3probe`: polling stays paused and packets stay held, until its
// own ping timeout (pingInterval + pingTimeout without a ping) closes the
// connection. The held packets' wait is counted then.
func (c *client) stallUntilTimeout(hs handshakeInfo, stage string) {
	c.poll.cancel()
	d := time.Duration(hs.PingInterval+hs.PingTimeout) * time.Millisecond
	go func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.r.ctx.Done():
		}
		c.omu.Lock()
		at := c.outAt
		c.outq, c.outAt = nil, nil
		c.omu.Unlock()
		c.r.noteWaits(at)
		c.r.onDead(c, fmt.Errorf("upgrade stalled (%s): polling paused, no ping for %s", stage, d))
	}()
}

// noteUpgradeFailure counts a failed upgrade under its reason.
func (r *run) noteUpgradeFailure(key string, full error) {
	r.upgFailed.Add(1)
	r.errMu.Lock()
	r.upgReasons[key]++
	r.errMu.Unlock()
	r.noteErr("upgrade", full)
}

// reasonKey shortens an error for counting: the text after the last
// "connect: " or address, without numbers that differ per client.
func reasonKey(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		s = s[i+2:]
	}
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// closePolling ends a polling client's requests; its GET loop returns.
func (c *client) closePolling() {
	if c.poll != nil {
		c.poll.cancel()
	}
}

// setTransport sets how c connects (Config.Transport).
func (c *client) setTransport(t string) {
	c.polling = t == TransportPolling || t == TransportUpgrade
	c.upgrade = t == TransportUpgrade
}

// finishTransport fills what polling-first clients measured.
func (r *run) finishTransport(res *Result) {
	res.EventWait = EventWait{N: r.waitN.Load(), Over1s: r.waitOver1s.Load(), MaxMs: ms(time.Duration(r.waitMax.Load()))}
	if res.EventWait.Over1s > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d packets held more than 1 s before sending (longest %.0f ms)", res.EventWait.Over1s, res.EventWait.MaxMs))
	}
	att := r.upgAttempted.Load()
	if att == 0 {
		return
	}
	u := &UpgradeResult{Attempted: att, Completed: r.upgCompleted.Load(), Failed: r.upgFailed.Load(),
		Stalled: r.upgStalled.Load(), Time: r.upgradeTime.Summary()}
	r.errMu.Lock()
	if len(r.upgReasons) > 0 {
		u.Reasons = maps.Clone(r.upgReasons)
	}
	r.errMu.Unlock()
	res.Upgrade = u
	if u.Failed > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d of %d upgrades failed (%d stalled after 3probe): %s",
			u.Failed, u.Attempted, u.Stalled, reasonsText(u.Reasons)))
	}
}

// reasonsText lists reasons by count, most frequent first.
func reasonsText(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", m[k], k)
	}
	return strings.Join(parts, "; ")
}
