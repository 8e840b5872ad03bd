package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// run is the state of one Run, shared by every goroutine.
type run struct {
	cfg     Config
	ctx     context.Context
	base    time.Time // monotonic origin of every timestamp below
	runID   string
	marker  []byte // `"lt:<run>:` starts each message text
	targets []*srvTarget
	wsPath  string
	loops   []*evloop
	httpc   *http.Client
	srcNext atomic.Uint64

	clients []*client // index = client number; nil until connected

	phase atomic.Value // string

	// connecting
	connectDur  []time.Duration // per client; 0 if it failed
	connected   atomic.Int64
	connectFail atomic.Int64
	ready       atomic.Int64
	alive       atomic.Int64
	disconnects atomic.Int64 // connections that ended before the run did
	closing     atomic.Bool

	errMu    sync.Mutex
	firstErr map[string]string // kind → first error text

	// messages: index = sequence number
	m             int
	n0            atomic.Int64   // clients alive when sending began: receivers of each message
	sentAt        []atomic.Int64 // ns since base; 0: not sent
	recvCount     []atomic.Int64
	doneAt        []atomic.Int64 // ns since base when the n0-th client got it
	ackAt         []atomic.Int64
	sent          atomic.Int64
	sendFail      atomic.Int64
	delivered     atomic.Int64
	deadDelivered atomic.Int64 // delivered to clients that died since
	dups          atomic.Int64
	foreign       atomic.Int64
	reloads       atomic.Int64
	acksOK        atomic.Int64
	acksFail      atomic.Int64
	delivery      Hist
	// With several servers: the server of each message's sender, and
	// deliveries split by whether the receiver is on that server.
	sentSrv        []atomic.Int32
	deliveryLocal  Hist
	deliveryRemote Hist

	readers sync.WaitGroup

	// polling-first clients (transport.go)
	waitN, waitOver1s, waitMax atomic.Int64 // packets held before sending; longest wait (ns)
	upgAttempted, upgCompleted atomic.Int64
	upgFailed, upgStalled      atomic.Int64
	upgReasons                 map[string]int // guarded by errMu
	upgradeTime                Hist           // Engine.IO open → upgrade done

	pingOnce                  sync.Once
	pingInterval, pingTimeout int64 // ms, from the first Engine.IO open packet
}

func (r *run) now() int64 { return int64(time.Since(r.base)) + 1 }

func (r *run) noteErr(kind string, err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if _, ok := r.firstErr[kind]; !ok {
		r.firstErr[kind] = err.Error()
	}
}

// onMessage counts one `new message` frame received by c.
func (r *run) onMessage(c *client, p []byte) {
	i := bytes.Index(p, r.marker)
	if i < 0 {
		r.foreign.Add(1)
		return
	}
	j := i + len(r.marker)
	seq := 0
	k := j
	for k < len(p) && k-j < 10 && p[k] >= '0' && p[k] <= '9' {
		seq = seq*10 + int(p[k]-'0')
		k++
	}
	if k == j || k >= len(p) || p[k] != ':' || seq >= r.m {
		r.foreign.Add(1)
		return
	}
	w, bit := seq>>6, uint64(1)<<(seq&63)
	if c.seen[w]&bit != 0 {
		r.dups.Add(1)
		return
	}
	c.seen[w] |= bit
	now := r.now()
	c.delivered.Add(1)
	r.delivered.Add(1)
	if s := r.sentAt[seq].Load(); s > 0 {
		d := time.Duration(now - s)
		r.delivery.Record(d)
		if len(r.targets) > 1 {
			if int(r.sentSrv[seq].Load()) == c.t.idx {
				r.deliveryLocal.Record(d)
			} else {
				r.deliveryRemote.Record(d)
			}
		}
	}
	if r.recvCount[seq].Add(1) == r.n0.Load() {
		r.doneAt[seq].Store(now)
	}
}

// onSendAck handles the acknowledgement of message seq: [{"success":...}].
func (r *run) onSendAck(seq int64, args []byte) {
	if seq < 0 || seq >= int64(r.m) {
		return
	}
	if bytes.Contains(args, successTrue) {
		r.acksOK.Add(1)
		r.ackAt[seq].CompareAndSwap(0, r.now())
		return
	}
	r.acksFail.Add(1)
	r.noteErr("ack", fmt.Errorf("send message #%d refused: %.200s", seq, args))
}

func newRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Run performs one load test and returns its measurements. The returned
// error is for runs that could not be measured at all (bad config, server
// unreachable); a run with missing deliveries returns a Result whose OK is
// false and whose Problems say why.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxRun)
	defer cancel()
	r := &run{cfg: cfg, ctx: ctx, base: time.Now(), runID: newRunID(), firstErr: map[string]string{}, upgReasons: map[string]int{}}
	if r.cfg.Prefix == "" {
		r.cfg.Prefix = "lt" + r.runID
	}
	r.marker = []byte(`"lt:` + r.runID + ":")
	urls, err := ParseURLs(cfg.URL)
	if err != nil {
		return nil, err
	}
	for i, u := range urls {
		t := &srvTarget{idx: i, url: u}
		if t.hostport, t.v4, err = target(u); err != nil {
			return nil, err
		}
		t.pollURL = "http://" + t.hostport + "/socket.io/?EIO=4&transport=polling"
		r.targets = append(r.targets, t)
	}
	r.wsPath = "/socket.io/?EIO=4&transport=websocket"
	nloops := cfg.Loops
	if nloops <= 0 {
		nloops = 1
	}
	for i := 0; i < nloops; i++ {
		l, err := newEvloop(r)
		if err != nil {
			for _, l := range r.loops {
				l.shutdown()
			}
			return nil, err
		}
		r.loops = append(r.loops, l)
	}
	defer r.closeAll()
	r.httpc = &http.Client{Transport: &http.Transport{
		DialContext:         r.dialContext,
		MaxIdleConnsPerHost: 2*cfg.Clients + 16,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}}
	defer r.httpc.CloseIdleConnections()
	r.clients = make([]*client, cfg.Clients)
	r.connectDur = make([]time.Duration, cfg.Clients)
	r.m = cfg.Messages
	r.sentAt = make([]atomic.Int64, r.m)
	r.recvCount = make([]atomic.Int64, r.m)
	r.doneAt = make([]atomic.Int64, r.m)
	r.ackAt = make([]atomic.Int64, r.m)
	if len(r.targets) > 1 {
		r.sentSrv = make([]atomic.Int32, r.m)
	}
	r.n0.Store(-1)
	r.phase.Store("start")

	res := &Result{
		Tool: "loadgen", Label: cfg.Label, ServerName: cfg.ServerName, Scenario: cfg.Scenario,
		Mode: "messages", URL: cfg.URL, Start: time.Now().UTC().Format(time.RFC3339),
		Clients: cfg.Clients, Senders: cfg.Senders, Rate: cfg.Rate, MessagesPlanned: cfg.Messages, Transport: cfg.Transport,
		LoadAvgStart: loadAvg(), GoMaxProcs: runtime.GOMAXPROCS(0), RunID: r.runID,
	}
	if cfg.Idle {
		res.Mode = "idle"
	}
	if len(urls) > 1 {
		res.URLs = urls
	}
	pids := cfg.ServerPIDs
	if len(pids) <= 1 && cfg.ServerPID > 0 {
		pids = []int{cfg.ServerPID}
	}
	srv := newProcWatch(pids)
	srvBase := srv.sample()
	selfBaseRSS := selfRSS()
	if len(pids) == 1 {
		res.Server.PID = pids[0]
	} else if len(pids) > 1 {
		res.Server.PIDs = pids
	}
	res.Server.RSSBeforeMB = mb(srvBase.RSS)
	if len(urls) > 1 {
		res.Servers = make([]ServerPart, len(urls))
		for i, u := range urls {
			res.Servers[i].URL = u
			if len(pids) == len(urls) {
				res.Servers[i].PID = pids[i]
				if i < len(srvBase.Parts) {
					res.Servers[i].RSSBeforeMB = mb(srvBase.Parts[i].RSS)
				}
			}
		}
	}

	stopProgress := r.progress(srv)
	defer stopProgress()

	// 1. Senders: connect, register, log in. Outside every measurement.
	r.phase.Store("senders")
	t0 := time.Now()
	if err := r.setupSenders(); err != nil {
		res.Problems = append(res.Problems, "senders: "+err.Error())
		r.finish(res, srv)
		return res, nil
	}
	res.SenderSetupS = secs(time.Since(t0))

	// 2. Everyone else, at the ramp rate.
	r.phase.Store("connect")
	cpuC0, selfC0 := srv.sample(), selfCPU()
	connectStart := time.Now()
	lastConnect := r.connectRest()
	res.Connect.TotalS = secs(lastConnect.Sub(connectStart))
	cpuC1 := srv.sample()
	res.Server.CPUConnectS = secs(cpuC1.CPU - cpuC0.CPU)
	for i := range res.Servers {
		if i < len(cpuC0.Parts) && i < len(cpuC1.Parts) {
			res.Servers[i].CPUConnectS = secs(cpuC1.Parts[i].CPU - cpuC0.Parts[i].CPU)
		}
	}
	res.Loadgen.CPUConnectS = secs(selfCPU() - selfC0)
	var cds []time.Duration
	for _, d := range r.connectDur {
		if d > 0 {
			cds = append(cds, d)
		}
	}
	cs := summarize(cds)
	res.Connect.OK, res.Connect.Failed = int(r.connected.Load()), int(r.connectFail.Load())
	res.Connect.P50, res.Connect.P95, res.Connect.P99, res.Connect.Max = cs.P50, cs.P95, cs.P99, cs.Max
	if res.Connect.Failed > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d of %d connections failed", res.Connect.Failed, cfg.Clients))
	}

	// 3. Wait for every history (`load all messages`), bounded.
	r.phase.Store("history")
	waitUntil(ctx, 60*time.Second, func() bool { return r.ready.Load() >= r.alive.Load() })
	res.Ready = int(r.ready.Load())
	if ctx.Err() != nil {
		res.Problems = append(res.Problems, "run cap (-max-run) reached while connecting")
		r.finish(res, srv)
		return res, nil
	}

	// 4. Settle: the server's idle cost (heartbeats).
	r.phase.Store("settle")
	s0 := srv.sample()
	sleepCtx(ctx, cfg.Settle)
	s1 := srv.sample()
	if d := s1.At.Sub(s0.At); d > 0 && srv.ok {
		res.Server.IdleCPUPct = round2(100 * float64(s1.CPU-s0.CPU) / float64(d))
	}

	if cfg.Idle {
		r.holdIdle(res, srv, srvBase, selfBaseRSS)
		r.finish(res, srv)
		return res, nil
	}

	// 5. Messages, between two scrapes of the servers' metrics.
	var m0 []metricsSample
	if cfg.BusLag {
		m0 = r.scrapeAll(res)
	}
	r.sendAndDrain(res, srv)
	if cfg.BusLag && m0 != nil {
		if m1 := r.scrapeAll(res); m1 != nil {
			r.busLag(res, m0, m1)
		}
	}
	r.finish(res, srv)
	return res, nil
}

// setupSenders connects the senders and registers and logs each in.
func (r *run) setupSenders() error {
	k := r.cfg.Senders
	if k == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second+time.Duration(k)*2*time.Second)
	defer cancel()
	errs := make([]error, k)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := 0; i < k; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c := &client{r: r, idx: i, t: r.targetOf(i), sender: true, setupAck: make(chan []byte, 1)}
			c.setTransport(r.cfg.Transport)
			if err := r.connectOne(ctx, c); err != nil {
				errs[i] = err
				return
			}
			name := fmt.Sprintf("%s_s%d", r.cfg.Prefix, i)
			cred := map[string]string{"username": name, "password": r.cfg.Password}
			for _, ev := range []string{"register", "login"} {
				a, err := c.call(ctx, ev, cred)
				if err != nil {
					errs[i] = err
					return
				}
				if !bytes.Contains(a, successTrue) {
					errs[i] = fmt.Errorf("%s %s refused: %.200s", ev, name, a)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// connectOne connects c and records its connect time; a polling-first
// client's reader is started by connectPolling, a WebSocket one's socket
// is on an event loop.
func (r *run) connectOne(ctx context.Context, c *client) error {
	if r.m > 0 {
		c.seen = make([]uint64, (r.m+63)/64)
	}
	start := time.Now()
	var err error
	if c.polling {
		err = c.connectPolling(ctx)
	} else {
		err = c.connectWS(ctx)
	}
	if err == nil {
		c.connectedAt = time.Now()
		// It may have ended already (before it was counted): then it
		// is a failed connect, not a disconnect.
		c.life.Lock()
		if c.dead.Load() {
			err = fmt.Errorf("ended while connecting: %w", c.deathErr)
		} else {
			c.registered = true
		}
		c.life.Unlock()
	}
	if err != nil {
		c.closePolling()
		r.connectFail.Add(1)
		r.noteErr("connect", err)
		return err
	}
	end := c.connectedAt
	if !c.connAt.IsZero() {
		end = c.connAt
	}
	r.connectDur[c.idx] = end.Sub(start)
	r.clients[c.idx] = c
	r.connected.Add(1)
	r.alive.Add(1)
	return nil
}

// onDead records the end of c's connection (once).
func (r *run) onDead(c *client, err error) {
	c.life.Lock()
	if c.dead.Swap(true) {
		c.life.Unlock()
		return
	}
	reg := c.registered
	if !reg {
		c.deathErr = err
	}
	c.life.Unlock()
	if !reg || r.closing.Load() {
		return
	}
	// The server (or the network) ended it during the run.
	r.disconnects.Add(1)
	kind := "websocket"
	switch {
	case c.upgrade && c.onWSNow():
		kind = "upgraded to websocket"
	case c.upgrade:
		kind = "polling, upgrade not done"
	case c.polling:
		kind = "polling"
	}
	lastPing := "no ping yet"
	if lp := c.lastPing.Load(); lp > 0 {
		lastPing = fmt.Sprintf("last ping %s before", time.Duration(r.now()-lp).Round(time.Millisecond))
	}
	r.noteErr("disconnect", fmt.Errorf("client %d (%s, connected %s before, %d pings answered, %s): %w",
		c.idx, kind, time.Since(c.connectedAt).Round(time.Millisecond), c.pings.Load(), lastPing, err))
	r.deadDelivered.Add(c.delivered.Load())
	r.alive.Add(-1)
}

// connectRest connects the clients after the senders at cfg.Ramp per
// second and returns when the last attempt has ended. It returns the time
// the last successful connection completed.
func (r *run) connectRest() time.Time {
	cfg := r.cfg
	sem := make(chan struct{}, cfg.ConnectConcurrency)
	var wg sync.WaitGroup
	var lastMu sync.Mutex
	last := time.Now()
	start := time.Now()
	rest := cfg.Clients - cfg.Senders
	npoll := 0
	for j := 0; j < rest; j++ {
		due := start.Add(time.Duration(float64(j) / cfg.Ramp * float64(time.Second)))
		if !sleepUntil(r.ctx, due) {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-r.ctx.Done():
		}
		if r.ctx.Err() != nil {
			break
		}
		// Spread the -polling share evenly: client j polls (and never
		// upgrades), whatever -transport says, when the
		// running total of cfg.Polling crosses an integer.
		polling := int(float64(j+1)*cfg.Polling) > npoll
		if polling {
			npoll++
		}
		c := &client{r: r, idx: cfg.Senders + j, t: r.targetOf(cfg.Senders + j)}
		if polling {
			c.setTransport(TransportPolling)
		} else {
			c.setTransport(cfg.Transport)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
			err := r.connectOne(ctx, c)
			cancel()
			<-sem
			if err == nil {
				lastMu.Lock()
				last = time.Now()
				lastMu.Unlock()
			}
		}()
	}
	wg.Wait()
	lastMu.Lock()
	defer lastMu.Unlock()
	return last
}

func (r *run) holdIdle(res *Result, srv *procWatch, base ProcSample, selfBase int64) {
	cfg := r.cfg
	r.phase.Store("hold")
	h0, self0 := srv.sample(), selfCPU()
	sleepCtx(r.ctx, cfg.Hold)
	h1, self1 := srv.sample(), selfCPU()
	alive := r.alive.Load()
	res.Idle = &IdleResult{
		HoldS:      secs(h1.At.Sub(h0.At)),
		Alive:      int(alive),
		LoadgenRSS: mb(selfRSS()),
	}
	if alive > 0 {
		res.Idle.LoadgenKBPerConn = round2(float64(selfRSS()-selfBase) / 1024 / float64(alive))
	}
	if srv.ok && alive > 0 {
		res.Idle.ServerKBPerConn = round2(float64(h1.RSS-base.RSS) / 1024 / float64(alive))
		connSecs := float64(alive) * h1.At.Sub(h0.At).Seconds()
		res.Idle.ServerCPUUsPerConnSec = round2(float64(h1.CPU-h0.CPU) / 1e3 / connSecs)
	}
	res.Loadgen.CPUHoldS = secs(self1 - self0)
	if int(alive) < cfg.Clients {
		res.Problems = append(res.Problems, fmt.Sprintf("only %d of %d connections alive at the end of the hold", alive, cfg.Clients))
	}
}

// sender writes the messages it is handed, in order.
type sender struct {
	c  *client
	ch chan int
}

func (r *run) sendAndDrain(res *Result, srv *procWatch) {
	cfg := r.cfg
	r.phase.Store("send")
	var senders []*sender
	for i := 0; i < cfg.Senders; i++ {
		if c := r.clients[i]; c != nil && !c.dead.Load() {
			senders = append(senders, &sender{c: c, ch: make(chan int, 4096)})
		}
	}
	if len(senders) == 0 {
		res.Problems = append(res.Problems, "no sender connected")
		return
	}
	r.n0.Store(r.alive.Load())
	res.Receivers = int(r.n0.Load())

	var swg sync.WaitGroup
	for _, s := range senders {
		swg.Add(1)
		go func(s *sender) {
			defer swg.Done()
			r.sendLoop(s)
		}(s)
	}

	p0, self0 := srv.sample(), selfCPU()
	start := time.Now()
	late := time.Duration(0)
	planned := 0
	for i := 0; i < r.m; i++ {
		due := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
		if due.Sub(start) > cfg.Duration {
			break
		}
		if !sleepUntil(r.ctx, due) {
			break
		}
		late = max(late, time.Since(due))
		select {
		case senders[i%len(senders)].ch <- i:
			planned++
		case <-r.ctx.Done():
		}
		if r.ctx.Err() != nil {
			break
		}
	}
	for _, s := range senders {
		close(s.ch)
	}
	waitTimeout(&swg, 30*time.Second)
	lastSend := time.Now()
	res.MessagesSent = int(r.sent.Load())
	res.SendPhaseS = secs(lastSend.Sub(start))
	res.PacerLateMaxMs = ms(late)
	if planned < r.m {
		res.Problems = append(res.Problems, fmt.Sprintf("only %d of %d messages fit in -duration / -max-run", planned, r.m))
	}

	// Drain: until every live client has every sent message, or -drain.
	r.phase.Store("drain")
	complete := func() bool {
		if cfg.Ack && r.acksOK.Load()+r.acksFail.Load() < r.sent.Load() && !r.clientsDead(senders) {
			return false
		}
		return r.delivered.Load()-r.deadDelivered.Load() >= r.sent.Load()*r.alive.Load()
	}
	waitUntil(r.ctx, cfg.Drain, complete)
	end := time.Now()
	p1, self1 := srv.sample(), selfCPU()
	res.DrainS = secs(end.Sub(lastSend))
	res.MessagePhaseS = secs(end.Sub(start))

	delivered := r.delivered.Load()
	expected := r.sent.Load() * r.n0.Load()
	res.Delivered, res.Expected = delivered, expected
	res.Missing = expected - delivered
	res.Duplicates, res.Foreign, res.Reloads = r.dups.Load(), r.foreign.Load(), r.reloads.Load()
	res.AcksOK, res.AcksFailed = r.acksOK.Load(), r.acksFail.Load()
	if el := end.Sub(start).Seconds(); el > 0 {
		res.DeliveriesPerSec = round2(float64(delivered) / el)
	}

	var fan, ack []time.Duration
	incomplete := 0
	for i := 0; i < r.m; i++ {
		s := r.sentAt[i].Load()
		if s == 0 {
			continue
		}
		if d := r.doneAt[i].Load(); d > 0 {
			fan = append(fan, time.Duration(d-s))
		} else {
			incomplete++
		}
		if a := r.ackAt[i].Load(); a > 0 {
			ack = append(ack, time.Duration(a-s))
		}
	}
	res.Fanout = summarize(fan)
	res.Delivery = r.delivery.Summary()
	if len(r.targets) > 1 {
		l, rm := r.deliveryLocal.Summary(), r.deliveryRemote.Summary()
		res.DeliveryLocal, res.DeliveryRemote = &l, &rm
	}
	if len(ack) > 0 {
		s := summarize(ack)
		res.Ack = &s
	}
	res.MessagesIncomplete = incomplete

	selfCPUs := self1 - self0
	res.Loadgen.CPUMessagesS = secs(selfCPUs)
	if delivered > 0 {
		res.Loadgen.CPUUsPerDelivery = round2(float64(selfCPUs) / 1e3 / float64(delivered))
	}
	if srv.ok {
		c := p1.CPU - p0.CPU
		res.Server.CPUMessagesS = secs(c)
		if delivered > 0 {
			res.Server.CPUUsPerDelivery = round2(float64(c) / 1e3 / float64(delivered))
		}
		if c > 0 {
			res.Server.DeliveriesPerCPUSec = round2(float64(delivered) / c.Seconds())
		}
		if el := end.Sub(start); el > 0 {
			res.Server.CPUMessagesPct = round2(100 * float64(c) / float64(el))
		}
		for i := range res.Servers {
			if i < len(p0.Parts) && i < len(p1.Parts) {
				c := p1.Parts[i].CPU - p0.Parts[i].CPU
				res.Servers[i].CPUMessagesS = secs(c)
				if el := end.Sub(start); el > 0 {
					res.Servers[i].CPUMessagesPct = round2(100 * float64(c) / float64(el))
				}
			}
		}
	}

	switch {
	case res.Missing > 0:
		res.Problems = append(res.Problems, fmt.Sprintf("%d of %d deliveries missing after a %.1fs drain (%d messages did not reach every client)",
			res.Missing, expected, res.DrainS, incomplete))
	case incomplete > 0:
		res.Problems = append(res.Problems, fmt.Sprintf("%d messages did not reach every client", incomplete))
	}
	if res.Duplicates > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d duplicate deliveries", res.Duplicates))
	}
	if f := r.sendFail.Load(); f > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d messages could not be written", f))
	}
	if res.AcksFailed > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d sends refused by the server", res.AcksFailed))
	}
	if cfg.Ack && res.AcksOK+res.AcksFailed < int64(res.MessagesSent) {
		res.Problems = append(res.Problems, fmt.Sprintf("%d sends never acknowledged", int64(res.MessagesSent)-res.AcksOK-res.AcksFailed))
	}
	if res.Reloads > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d `reload` events (sender not logged in)", res.Reloads))
	}
}

// clientsDead reports whether any sender's connection has ended (its
// acknowledgements can no longer come).
func (r *run) clientsDead(ss []*sender) bool {
	for _, s := range ss {
		if s.c.dead.Load() {
			return true
		}
	}
	return false
}

// sendLoop writes each message handed to s: `send message` with the text
// "lt:<run>:<seq>:<sendUnixNano>", with an ack id (= seq) when cfg.Ack.
func (r *run) sendLoop(s *sender) {
	buf := make([]byte, 0, 128)
	for seq := range s.ch {
		buf = append(buf[:0], "42"...)
		if r.cfg.Ack {
			buf = strconv.AppendInt(buf, int64(seq), 10)
		}
		buf = append(buf, `["send message","lt:`...)
		buf = append(buf, r.runID...)
		buf = append(buf, ':')
		buf = strconv.AppendInt(buf, int64(seq), 10)
		buf = append(buf, ':')
		buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
		buf = append(buf, `"]`...)
		if r.sentSrv != nil {
			r.sentSrv[seq].Store(int32(s.c.t.idx))
		}
		r.sentAt[seq].Store(r.now())
		if err := s.c.send(buf); err != nil {
			r.sentAt[seq].Store(0)
			r.sendFail.Add(1)
			r.noteErr("send", err)
			continue
		}
		r.sent.Add(1)
	}
}

// closeAll ends every connection and waits (bounded) for the readers.
func (r *run) closeAll() {
	r.closing.Store(true)
	r.phase.Store("close")
	for _, l := range r.loops {
		l.shutdown()
	}
	for _, c := range r.clients {
		if c != nil {
			c.closePolling()
		}
	}
	done := make(chan struct{})
	go func() { r.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
	}
}

// finish fills what every result has.
func (r *run) finish(res *Result, srv *procWatch) {
	end := srv.sample()
	res.Server.RSSAfterMB = mb(end.RSS)
	res.Server.RSSPeakMB = mb(max(srv.peakRSS(), end.RSS))
	res.Server.HWMMB = mb(end.HWM)
	for i := range res.Servers {
		if i < len(end.Parts) {
			res.Servers[i].RSSAfterMB = mb(end.Parts[i].RSS)
			res.Servers[i].RSSPeakMB = mb(max(srv.peakRSSOf(i), end.Parts[i].RSS))
		}
	}
	for _, c := range r.clients {
		if c != nil && c.t != nil && c.t.idx < len(res.Servers) {
			res.Servers[c.t.idx].Clients++
			if c.sender {
				res.Servers[c.t.idx].Senders++
			}
		}
	}
	res.Disconnects = int(r.disconnects.Load())
	if res.Disconnects > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d connections ended during the run", res.Disconnects))
	}
	if r.ctx.Err() != nil && !containsPrefix(res.Problems, "run cap") {
		res.Problems = append(res.Problems, "run cap (-max-run) reached")
	}
	r.errMu.Lock()
	if len(r.firstErr) > 0 {
		res.FirstErrors = r.firstErr
	}
	r.errMu.Unlock()
	res.Loadgen.RSSMB = mb(selfRSS())
	if r.connected.Load() > 0 {
		r.pingOnce.Do(func() {}) // happens-before for the fields set in it
		res.PingIntervalMs, res.PingTimeoutMs = r.pingInterval, r.pingTimeout
	}
	res.LoadAvgEnd = loadAvg()
	n := 0
	for _, c := range r.clients {
		if c != nil && c.polling && !c.onWSNow() {
			n++
		}
	}
	res.PollingClients = n
	r.finishTransport(res)
	if len(srv.pids) == 1 && !srv.ok {
		res.Problems = append(res.Problems, fmt.Sprintf("could not read /proc/%d: %v", srv.pids[0], srv.err))
	} else if len(srv.pids) > 1 && !srv.ok {
		res.Problems = append(res.Problems, fmt.Sprintf("could not read /proc of every server: %v", srv.err))
	}
	res.OK = len(res.Problems) == 0
}

// ---- small helpers ----

func containsPrefix(ss []string, p string) bool {
	for _, s := range ss {
		if len(s) >= len(p) && s[:len(p)] == p {
			return true
		}
	}
	return false
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	if d := time.Until(t); d > 0 {
		return sleepCtx(ctx, d)
	}
	return ctx.Err() == nil
}

// waitUntil polls cond every 5 ms for at most d.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || !sleepCtx(ctx, 5*time.Millisecond) {
			return cond()
		}
	}
	return true
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
