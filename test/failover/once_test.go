package failover

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
	"github.com/chatd/chat/internal/testpg"
	"github.com/chatd/chat/internal/testproc"
)

// TestOnceAcrossCluster is issue 14's scale-out run, repeated: three
// servers on one PostgreSQL (and, for the NATS variant, one NATS), 45 users
// connected straight to them (15 each, half starting on long-polling), 15
// of them sending with client ids and an outbox. Each cycle picks a server,
// makes every sender on it send at once and SIGKILLs it a few milliseconds
// later (1 to 4 ms, varied), so that messages are stored and not yet
// acknowledged, acknowledged and not yet announced on the bus, or
// announced and not yet acknowledged; its users reconnect to the other
// servers with their session token and resend what was not acknowledged;
// the server is started again. Every cycle's counts are logged.
//
// Asserted at the end, over every cycle:
//   - every acknowledged message is stored once, under the id acknowledged,
//     and every stored message was acknowledged (nothing invented);
//   - no socket is given one message id twice, by its history, live, or in
//     a page of `load older messages`, in any order;
//   - a socket that was live when a message was acknowledged, and stayed
//     connected for a while after, received it (the acknowledgement's
//     promise: every server delivers it);
//   - every user, over its connections, saw every stored message with its
//     text (history, live, or by paging back after a reconnect).
//
// ONCE_CYCLES sets the number of kills per bus (default onceCycles).
func TestOnceAcrossCluster(t *testing.T) {
	for _, bus := range []string{"postgres", "nats"} {
		t.Run(bus, func(t *testing.T) { testOnce(t, bus) })
	}
}

const (
	onceServers    = 3
	oncePerServer  = 15
	onceSenders    = 5 // per server
	onceHistory    = 40
	oncePeriod     = 200 * time.Millisecond
	onceCycles     = 30
	onceLiveWithin = 3 * time.Second // a live socket must have an acknowledged message by then
	// onceHoldFor bounds a held run's wait for an acknowledgement.
	onceHoldFor = time.Second
)

// onceHeld tells whether run k of cycles is a held one: on NATS, every
// tenth run and the last, the victim's traffic to nats-server is held in
// its proxy (holdProxy) from just before the burst until the kill, and
// discarded: issue 14's lost acknowledged message made certain rather than
// a 1-in-20 timing. A publish only queued in the NATS client was
// acknowledged then, and no other server delivered it (a loss in every
// held run); a confirmed one is not acknowledged, and the sender's resend
// through another server announces it.
func onceHeld(busKind string, k, cycles int) bool {
	return busKind == "nats" && (k%10 == 0 || k == cycles)
}

func testOnce(t *testing.T, busKind string) {
	if testing.Short() {
		t.Skip("failover tests take a minute; skipped with -short")
	}
	// One thread per server, as on a starved shared machine: a goroutine
	// made ready (the NATS client's flusher) may wait behind the one
	// that readied it (the handler writing the acknowledgement).
	env := []string{fmt.Sprintf("HISTORY_LIMIT=%d", onceHistory), "GOMAXPROCS=1"}
	var natsU *url.URL
	if busKind == "nats" {
		var err error
		if natsU, err = url.Parse(natsURL(t)); err != nil {
			t.Fatal(err)
		}
	}
	cycles := onceCycles
	if s := os.Getenv("ONCE_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			t.Fatalf("ONCE_CYCLES=%q: want 1-1000", s)
		}
		cycles = n
	}
	c := &cluster{
		t:     t,
		dir:   t.TempDir(),
		dsn:   testpg.New(t),
		env:   env,
		envOf: map[string][]string{},
		ports: map[string]int{},
		procs: map[string]*proc{},
	}
	names := make([]string, onceServers)
	urls := make([]string, onceServers)
	// On NATS each server reaches nats-server through a proxy of its own,
	// which the held runs use (see onceHeld).
	proxies := make([]*holdProxy, onceServers)
	for i := range names {
		names[i] = fmt.Sprintf("s%d", i)
		c.ports[names[i]] = testproc.FreePort(t)
		urls[i] = fmt.Sprintf("http://127.0.0.1:%d", c.ports[names[i]])
		if natsU != nil {
			proxies[i] = newHoldProxy(t, natsU.Host)
			via := *natsU
			via.Host = proxies[i].addr()
			c.envOf[names[i]] = []string{"BUS_URL=" + via.String()}
		}
	}
	c.bin = chatdBinary(t)
	t.Cleanup(c.stopAll)
	for _, name := range names {
		c.start(name)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cycles)*5*time.Second+60*time.Second)
	defer cancel()
	var cycle atomic.Int32
	// killer: while armed with a victim's pid, the first sender to get an
	// acknowledgement from that server kills it at once, from its own
	// goroutine (the bad moment: acknowledged, maybe not yet announced).
	killer := &onceKiller{}
	users := make([]*onceUser, onceServers*oncePerServer)
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	for i := range users {
		home := i % onceServers
		k := i / onceServers
		u := &onceUser{
			name: fmt.Sprintf("%s%02d", busKind[:2], i), urls: urls, server: home,
			sender: k < onceSenders, cycle: &cycle, killer: killer,
			transport: "websocket", seen: map[int64]string{}, acked: map[string]int64{},
			ackAt: map[string]time.Time{}, tries: map[string]int{},
			trigger: make(chan struct{}, 1),
		}
		if k%2 == 1 {
			u.transport = "polling"
		}
		users[i] = u
		wg.Go(func() {
			if err := u.registerAndLogin(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	var sendOn atomic.Bool
	sendOn.Store(true)
	chatCtx, stopChat := context.WithCancel(ctx)
	var chatting sync.WaitGroup
	for _, u := range users {
		chatting.Go(func() { u.chat(chatCtx, sendOn.Load, oncePeriod) })
	}
	stopped := false
	stopUsers := func() {
		if stopped {
			return
		}
		stopped = true
		stopChat()
		chatting.Wait()
	}
	defer stopUsers()
	time.Sleep(time.Second)

	type cycleLog struct {
		victim   string
		how      string
		inFlight int
		back     time.Duration
	}
	logs := make([]cycleLog, cycles+1)
	heldRuns, heldEvents := 0, 0
	for k := 1; k <= cycles; k++ {
		// The victim: the server with the most senders on it.
		count := make([]int, onceServers)
		for _, u := range users {
			if u.sender && u.connected() {
				count[u.serverNow()]++
			}
		}
		v := 0
		for i := range count {
			if count[i] > count[v] {
				v = i
			}
		}
		victim := names[v]
		delay := time.Duration(1+(k%4)) * time.Millisecond
		onAck := k%2 == 0
		held := onceHeld(busKind, k, cycles)
		cycle.Store(int32(k))
		c.mu.Lock()
		pid := c.procs[victim].cmd.Process.Pid
		c.mu.Unlock()
		if held {
			// What the victim sends to NATS from now on stays in the
			// proxy and is lost with it: killed by the first
			// acknowledgement from it, which a confirmed publish cannot
			// give now, or after onceHoldFor.
			proxies[v].hold()
			onAck = true
		}
		if onAck {
			// Killed by the first acknowledgement from it, or after 50 ms.
			delay = 50 * time.Millisecond
			if held {
				delay = onceHoldFor
			}
			killer.server.Store(int32(v))
			killer.pid.Store(int64(pid))
		}
		for _, u := range users {
			if u.sender && u.serverNow() == v {
				select {
				case u.trigger <- struct{}{}:
				default:
				}
			}
		}
		for end := time.Now().Add(delay); time.Now().Before(end) && (!onAck || killer.pid.Load() != 0); {
			time.Sleep(100 * time.Microsecond)
		}
		how := fmt.Sprintf("%v after the burst", delay)
		if !onAck || killer.pid.Swap(0) != 0 {
			c.signal(victim, syscall.SIGKILL)
		} else {
			how = "on its first acknowledgement"
		}
		if held {
			how += ", its NATS traffic held"
		}
		t0 := time.Now()
		inFlight := 0
		for _, u := range users {
			u.mu.Lock()
			if u.sending != "" {
				inFlight++
			}
			u.mu.Unlock()
		}
		c.waitExit(victim, 10*time.Second)
		if held {
			n := proxies[v].drop()
			heldRuns++
			heldEvents += n
			how += fmt.Sprintf(", %d message events lost in the proxy", n)
		}
		c.start(victim)
		// Everyone back: connected, resumed, every sender acknowledged
		// after the kill.
		deadline := time.Now().Add(20 * time.Second)
		for {
			var stuck []string
			for _, u := range users {
				if s := u.backAfter(t0); s != "" {
					stuck = append(stuck, s)
				}
			}
			if len(stuck) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s cycle %d: %d users not back within 20 s after killing %s: %v", busKind, k, len(stuck), victim, stuck[:min(5, len(stuck))])
			}
			time.Sleep(20 * time.Millisecond)
		}
		logs[k] = cycleLog{victim, how, inFlight, time.Since(t0)}
		time.Sleep(200 * time.Millisecond)
	}
	cycle.Store(int32(cycles + 1))
	time.Sleep(500 * time.Millisecond)
	sendOn.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := 0
		for _, u := range users {
			u.mu.Lock()
			left += len(u.outbox)
			u.mu.Unlock()
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still in outboxes 20 s after sending stopped", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(onceLiveWithin)
	final := time.Now()
	stopUsers()
	for _, u := range users {
		u.close()
	}

	res := checkOnce(t, c.dsn, users, final, cycles)
	for k := 0; k <= cycles+1; k++ {
		r := res.perCycle[k]
		l := cycleLog{}
		if k >= 1 && k <= cycles {
			l = logs[k]
		}
		what := "steady"
		if l.victim != "" {
			what = fmt.Sprintf("kill %s %s, %d in flight, all back in %v", l.victim, l.how, l.inFlight, l.back.Round(time.Millisecond))
		}
		t.Logf("%s run %d (%s): sent %d, acknowledged %d, stored %d, duplicates %d, losses %d",
			busKind, k, what, r.sent, r.acked, r.stored, r.dups, r.losses)
	}
	if heldRuns > 0 && heldEvents == 0 {
		t.Errorf("%s: %d held runs and no message event held: issue 14's lost acknowledgement was not exercised", busKind, heldRuns)
	}
	bad := 0
	for k := 1; k <= cycles; k++ {
		if r := res.perCycle[k]; r.dups > 0 || r.losses > 0 || r.acked != r.stored {
			bad++
		}
	}
	t.Logf("%s bus: %d kill runs, %d with a defect; total sent %d, acknowledged %d, stored %d, duplicates %d, losses %d, "+
		"%d sockets checked, %d pages read", busKind, cycles, bad, res.total.sent, res.total.acked, res.total.stored,
		res.total.dups, res.total.losses, res.sockets, res.pages)
}

// onceUser is one user of TestOnceAcrossCluster, connected straight to one
// server and moving to another when it dies.
type onceUser struct {
	name, transport string
	urls            []string
	sender          bool
	cycle           *atomic.Int32
	killer          *onceKiller
	trigger         chan struct{} // send one message now

	mu sync.Mutex
	// Fields below are guarded by mu.
	server  int // index into urls of the server of the current connection
	token   string
	conn    *sioclient.Conn
	sock    *onceSock   // the current connection
	socks   []*onceSock // every connection, the current one included
	seen    map[int64]string
	n       int
	outbox  []pending
	sending string
	acked   map[string]int64
	ackAt   map[string]time.Time
	tries   map[string]int
	pages   int
	lastErr error
}

// onceKiller kills a server from a sender's goroutine the moment it has an
// acknowledgement from it.
type onceKiller struct {
	pid    atomic.Int64 // 0 when not armed
	server atomic.Int32
}

// acked is called by a sender on server i after an acknowledgement.
func (k *onceKiller) acked(i int) {
	if k.pid.Load() != 0 && k.server.Load() == int32(i) {
		if pid := k.pid.Swap(0); pid != 0 {
			syscall.Kill(int(pid), syscall.SIGKILL)
		}
	}
}

// onceSock is what one connection (socket) was given.
type onceSock struct {
	server  int
	live    time.Time // when its history arrived
	resumed bool
	ended   time.Time // zero while open, or closed by the test at the end
	got     map[int64]string
	dups    []onceDup
}

type onceDup struct {
	id          int64
	cycle       int
	first, then string
}

func (d onceDup) String() string {
	return fmt.Sprintf("id %d in run %d (%s, then %s)", d.id, d.cycle, d.first, d.then)
}

func (u *onceUser) serverNow() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.server
}

func (u *onceUser) connected() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conn != nil && u.conn.Err() == nil && u.sock.resumed
}

// backAfter is "" once u is connected and resumed on a connection live
// after t0 or never lost, and, for a sender, acknowledged after t0;
// otherwise why not.
func (u *onceUser) backAfter(t0 time.Time) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn == nil || u.conn.Err() != nil || !u.sock.resumed {
		return fmt.Sprintf("%s (not connected, last error %v)", u.name, u.lastErr)
	}
	if !u.sender {
		return ""
	}
	for _, at := range u.ackAt {
		if at.After(t0) {
			return ""
		}
	}
	return fmt.Sprintf("%s (no ack since the kill, outbox %d, last error %v)", u.name, len(u.outbox), u.lastErr)
}

// give records a message given to socket s in some way.
func (u *onceUser) give(s *onceSock, v any, how string) {
	m, _ := v.(map[string]any)
	f, _ := m["id"].(float64)
	id := int64(f)
	if id == 0 {
		return
	}
	if first := s.got[id]; first != "" {
		s.dups = append(s.dups, onceDup{id, int(u.cycle.Load()), first, how})
	} else {
		s.got[id] = how
	}
	u.seen[id] = fmt.Sprint(m["user"], ":", m["msg"])
}

func (u *onceUser) onEvent(s *onceSock, name string, args []any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch name {
	case "load all messages":
		list, _ := args[0].([]any)
		for _, it := range list {
			u.give(s, it, "history")
		}
		s.live = time.Now()
	case "new message":
		u.give(s, args[0], "live")
	case "session":
		m, _ := args[0].(map[string]any)
		if m["username"] == u.name {
			s.resumed = true
		}
	}
}

func (u *onceUser) onClose(s *onceSock) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.ended.IsZero() {
		s.ended = time.Now()
	}
}

// dial opens a connection to server i, resuming the session if there is a
// token, and pages back until the history joins what u saw before.
func (u *onceUser) dial(ctx context.Context, i int) error {
	u.mu.Lock()
	token := u.token
	s := &onceSock{server: i, got: map[int64]string{}}
	u.mu.Unlock()
	var auth map[string]any
	if token != "" {
		auth = map[string]any{"token": token}
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := sioclient.Dial(dctx, u.urls[i], sioclient.Options{Auth: auth, Transport: u.transport,
		RequestTimeout: 10 * time.Second,
		OnEvent:        func(name string, args []any) { u.onEvent(s, name, args) },
		OnClose:        func(error) { u.onClose(s) }})
	if err != nil {
		return err
	}
	if token != "" {
		for {
			u.mu.Lock()
			ok := s.resumed
			u.mu.Unlock()
			if ok {
				break
			}
			select {
			case <-conn.Done():
				return conn.Err()
			case <-dctx.Done():
				conn.Close()
				return fmt.Errorf("session not resumed")
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	u.mu.Lock()
	if token == "" {
		s.resumed = true // logs in next
	}
	// Page back past the newest id seen before, by a margin: a message
	// stored just before a server died can be broadcast by another one
	// (on its sender's resend) before this connection was open, below
	// its history.
	var known int64
	for id := range u.seen {
		known = max(known, id)
	}
	known -= 300
	u.conn, u.sock, u.server = conn, s, i
	u.socks = append(u.socks, s)
	var lowest int64
	for id := range s.got {
		if lowest == 0 || id < lowest {
			lowest = id
		}
	}
	u.mu.Unlock()
	// Fill the gap between what this user saw before and this history,
	// as a page does when it reconnects.
	for pages := 0; lowest > 1 && lowest > known && token != "" && pages < 20; pages++ {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		a, err := conn.Call(cctx, "load older messages", map[string]any{"before": lowest, "limit": 100})
		cancel()
		if err != nil {
			return nil // the connection is gone; the next one pages again
		}
		m, _ := a[0].(map[string]any)
		if m["success"] != true {
			// Refused (the per-socket page rate): try again, as the
			// page does.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		list, _ := m["messages"].([]any)
		u.mu.Lock()
		u.pages++
		for _, it := range list {
			id := int64(it.(map[string]any)["id"].(float64))
			u.give(s, it, "page")
			lowest = min(lowest, id)
		}
		u.mu.Unlock()
		if len(list) == 0 {
			break
		}
	}
	return nil
}

// reconnect dials the other servers in a random order, then its own, until
// one takes it (bounded by ctx).
func (u *onceUser) reconnect(ctx context.Context) error {
	for ctx.Err() == nil {
		from := u.serverNow()
		order := []int{}
		for _, i := range rand.Perm(len(u.urls)) {
			if i != from {
				order = append(order, i)
			}
		}
		order = append(order, from)
		for _, i := range order {
			err := u.dial(ctx, i)
			if err == nil {
				return nil
			}
			u.mu.Lock()
			u.lastErr = err
			u.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return ctx.Err()
}

func (u *onceUser) call(ctx context.Context, ev string, args ...any) (map[string]any, error) {
	u.mu.Lock()
	c := u.conn
	u.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("not connected")
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	a, err := c.Call(cctx, ev, args...)
	if err != nil {
		return nil, err
	}
	m, _ := a[0].(map[string]any)
	return m, nil
}

func (u *onceUser) registerAndLogin(ctx context.Context) error {
	if err := u.dial(ctx, u.server); err != nil {
		return fmt.Errorf("%s: %w", u.name, err)
	}
	if a, err := u.call(ctx, "register", map[string]any{"username": u.name, "password": "pw"}); err != nil || a["success"] != true {
		return fmt.Errorf("%s: register: %v %v", u.name, a, err)
	}
	a, err := u.call(ctx, "login", map[string]any{"username": u.name, "password": "pw"})
	if err != nil || a["success"] != true {
		return fmt.Errorf("%s: login: %v %v", u.name, a, err)
	}
	u.mu.Lock()
	u.token, _ = a["token"].(string)
	u.mu.Unlock()
	return nil
}

// flush sends the outbox, oldest first, one message in flight at a time.
func (u *onceUser) flush(ctx context.Context) error {
	for {
		u.mu.Lock()
		if len(u.outbox) == 0 || u.conn == nil {
			u.mu.Unlock()
			return nil
		}
		p := u.outbox[0]
		u.sending = p.cid
		u.tries[p.cid]++
		c, server := u.conn, u.server
		u.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		a, err := c.Call(cctx, "send message", p.text, map[string]any{"id": p.cid})
		cancel()
		u.mu.Lock()
		u.sending = ""
		u.mu.Unlock()
		if err != nil {
			return err
		}
		m, _ := a[0].(map[string]any)
		if m["success"] == true {
			u.killer.acked(server)
		}
		if m["success"] != true {
			return fmt.Errorf("%s: send refused: %v", u.name, m)
		}
		id, _ := m["id"].(float64)
		u.mu.Lock()
		if _, dup := u.acked[p.cid]; dup {
			u.mu.Unlock()
			return fmt.Errorf("%s: message %s acknowledged twice", u.name, p.cid)
		}
		u.acked[p.cid] = int64(id)
		u.ackAt[p.cid] = time.Now()
		u.outbox = u.outbox[1:]
		u.mu.Unlock()
	}
}

func (u *onceUser) chat(ctx context.Context, sending func() bool, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for ctx.Err() == nil {
		u.mu.Lock()
		c := u.conn
		u.mu.Unlock()
		if c == nil || c.Err() != nil {
			if c != nil {
				c.Close()
			}
			if u.reconnect(ctx) != nil {
				return
			}
			u.mu.Lock()
			c = u.conn
			u.mu.Unlock()
		}
		if u.sender && sending() {
			u.mu.Lock()
			u.n++
			cid := fmt.Sprintf("%s-r%d-%d", u.name, u.cycle.Load(), u.n)
			u.outbox = append(u.outbox, pending{cid: cid, text: "says " + cid})
			u.mu.Unlock()
		}
		if err := u.flush(ctx); err != nil {
			u.mu.Lock()
			u.lastErr = err
			u.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		case <-u.trigger:
		case <-c.Done():
		}
	}
}

func (u *onceUser) close() {
	u.mu.Lock()
	c := u.conn
	u.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

type onceCounts struct{ sent, acked, stored, dups, losses int }

type onceResult struct {
	perCycle map[int]*onceCounts
	total    onceCounts
	sockets  int
	pages    int
}

// cycleOf reads the run a message was first queued in from its client id.
func cycleOf(cid string) int {
	parts := strings.Split(cid, "-")
	if len(parts) < 3 || !strings.HasPrefix(parts[1], "r") {
		return -1
	}
	k, _ := strconv.Atoi(parts[1][1:])
	return k
}

// checkOnce checks the invariants of TestOnceAcrossCluster, failing the
// test with examples, and returns the counts per run.
func checkOnce(t *testing.T, dsn string, users []*onceUser, final time.Time, cycles int) onceResult {
	t.Helper()
	rows := dbMessages(t, dsn)
	res := onceResult{perCycle: map[int]*onceCounts{}}
	at := func(k int) *onceCounts {
		if res.perCycle[k] == nil {
			res.perCycle[k] = &onceCounts{}
		}
		return res.perCycle[k]
	}
	for k := 0; k <= cycles+1; k++ {
		at(k)
	}
	byCID := map[string][]dbMsg{}
	byID := map[int64]dbMsg{}
	for _, m := range rows {
		byCID[m.cid] = append(byCID[m.cid], m)
		byID[m.id] = m
		at(cycleOf(m.cid)).stored++
	}
	type ackd struct {
		id  int64
		at  time.Time
		cid string
	}
	var acks []ackd
	ackedCID := map[string]bool{}
	var errs []string
	fail := func(format string, args ...any) {
		if len(errs) < 30 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	for _, u := range users {
		u.mu.Lock()
		sent := map[string]bool{}
		for cid := range u.tries {
			sent[cid] = true
		}
		for _, p := range u.outbox {
			sent[p.cid] = true
			fail("%s: %s never acknowledged", u.name, p.cid)
		}
		for cid := range sent {
			at(cycleOf(cid)).sent++
		}
		for cid, id := range u.acked {
			at(cycleOf(cid)).acked++
			ackedCID[cid] = true
			acks = append(acks, ackd{id, u.ackAt[cid], cid})
			got := byCID[cid]
			if len(got) != 1 {
				fail("%s: %s (acknowledged as %d) stored %d times", u.name, cid, id, len(got))
				continue
			}
			if got[0].id != id {
				fail("%s: %s acknowledged as id %d, stored as %d", u.name, cid, id, got[0].id)
			}
		}
		u.mu.Unlock()
	}
	for _, m := range rows {
		if !ackedCID[m.cid] {
			fail("message %d (%s) stored but never acknowledged", m.id, m.cid)
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].at.Before(acks[j].at) })
	for _, u := range users {
		u.mu.Lock()
		res.pages += u.pages
		for id, what := range u.seen {
			m, ok := byID[id]
			if !ok || m.user+":"+m.text != what {
				fail("%s: shown message %d %q, which is not stored so", u.name, id, what)
			}
		}
		var missing []int64
		for _, m := range rows {
			if _, ok := u.seen[m.id]; !ok {
				missing = append(missing, m.id)
			}
		}
		if len(missing) > 0 {
			fail("%s: never saw %d stored messages: %v", u.name, len(missing), missing[:min(5, len(missing))])
		}
		for _, s := range u.socks {
			res.sockets++
			for _, d := range s.dups {
				at(d.cycle).dups++
				fail("%s: socket on s%d given %s", u.name, s.server, d)
			}
			if s.live.IsZero() {
				continue
			}
			end := s.ended
			if end.IsZero() || end.After(final) {
				end = final
			}
			for _, a := range acks {
				if !a.at.After(s.live) {
					continue
				}
				if a.at.Add(onceLiveWithin).After(end) {
					break
				}
				if _, ok := s.got[a.id]; !ok {
					at(cycleOf(a.cid)).losses++
					fail("%s: socket on s%d live from %s to %s never got %d (%s), acknowledged at %s",
						u.name, s.server, s.live.Format("15:04:05.000"), end.Format("15:04:05.000"), a.id, a.cid, a.at.Format("15:04:05.000"))
				}
			}
		}
		u.mu.Unlock()
	}
	keys := make([]int, 0, len(res.perCycle))
	for k := range res.perCycle {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r := res.perCycle[k]
		res.total.sent += r.sent
		res.total.acked += r.acked
		res.total.stored += r.stored
		res.total.dups += r.dups
		res.total.losses += r.losses
	}
	for _, e := range errs {
		t.Error(e)
	}
	return res
}
