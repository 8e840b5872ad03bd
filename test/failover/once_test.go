package failover

import (
	"context"
	"fmt"
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
// the server is started again. On NATS, every tenth cycle and the last
// hold the victim's traffic to nats-server from the burst to the kill and
// discard it (onceHeld): the victim must acknowledge nothing sent meanwhile.
// Every cycle's counts are logged.
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
// a 1-in-20 timing. The victim is killed on its first acknowledgement of a
// message sent during the hold, or after onceHoldFor; no kill follows for
// onceLiveWithin, so that the other servers' sockets are held to every
// acknowledgement. A publish only queued in the NATS client was
// acknowledged at once, and no other server delivered it (losses in every
// held run: 60, 15 and 180 socket-messages in runs 10, 20, 30 with
// natsbus.Publish's confirmation removed); a confirmed one is not
// acknowledged (asserted), and the sender's resend through another server
// announces it.
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
	users := make([]*user, onceServers*oncePerServer)
	senders := map[*user]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	for i := range users {
		home := i % onceServers
		k := i / onceServers
		u := newUser("", fmt.Sprintf("%s%02d", busKind[:2], i))
		u.urls, u.server = urls, home
		u.dialWait, u.reqTimeout = 5*time.Second, 10*time.Second
		u.cycle, u.killer, u.trigger = &cycle, killer, make(chan struct{}, 1)
		senders[u] = k < onceSenders
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
		sending := func() bool { return senders[u] && sendOn.Load() }
		chatting.Go(func() { u.chat(chatCtx, sending, oncePeriod) })
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
	heldRuns, heldEvents, heldAcked := 0, 0, 0
	for k := 1; k <= cycles; k++ {
		// The victim: the server with the most senders on it.
		count := make([]int, onceServers)
		for _, u := range users {
			if senders[u] && u.connected() {
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
			killer.since.Store(0)
			if held {
				// Not the acknowledgement of a message sent before
				// the hold, whose announcement got through.
				killer.since.Store(time.Now().UnixNano())
			}
			killer.pid.Store(int64(pid))
		}
		for _, u := range users {
			if senders[u] && u.serverNow() == v {
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
		} else if held {
			// The defect itself: acknowledged, announcement held.
			how = "on its acknowledgement of a message sent during the hold"
			heldAcked++
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
				if s := u.backAfter(t0, senders[u]); s != "" {
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
		if held {
			// No kill for onceLiveWithin: the other servers' sockets
			// stay long enough for a loss to count (the next kill
			// comes sooner, and a socket of a server killed within
			// onceLiveWithin of an acknowledgement is not held to it).
			time.Sleep(onceLiveWithin)
		}
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
	if heldAcked > 0 {
		t.Errorf("%s: in %d of %d held runs the victim acknowledged a message whose announcement never reached NATS", busKind, heldAcked, heldRuns)
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
func checkOnce(t *testing.T, dsn string, users []*user, final time.Time, cycles int) onceResult {
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
		ackAt := map[string]time.Time{}
		for _, a := range u.acks {
			ackAt[a.cid] = a.at
		}
		for cid, id := range u.acked {
			at(cycleOf(cid)).acked++
			ackedCID[cid] = true
			acks = append(acks, ackd{id, ackAt[cid], cid})
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
			var ackedAt time.Time
			for _, a := range acks {
				if a.id == missing[0] {
					ackedAt = a.at
				}
			}
			fail("%s (%s): never saw %d stored messages: %v (the first acknowledged at %s); its connections: %s", u.name, u.transport,
				len(missing), missing[:min(5, len(missing))], ackedAt.Format("15:04:05.000"), describeSocks(u.socks, missing[0]))
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

// describeSocks says, for a user that never saw message id, what each of
// its connections was given around it: when it was up and live, how it
// ended, the range of ids it got and how (history, live, page), so that a
// failure shows where the message fell through.
func describeSocks(socks []*sock, id int64) string {
	var b strings.Builder
	for _, s := range socks {
		var lo, hi int64
		how := map[string]int{}
		below, above := int64(0), int64(0) // the nearest ids given around id
		for g, h := range s.got {
			if lo == 0 || g < lo {
				lo = g
			}
			hi = max(hi, g)
			how[h]++
			if g < id && g > below {
				below = g
			}
			if g > id && (above == 0 || g < above) {
				above = g
			}
		}
		ended := "open"
		if !s.ended.IsZero() {
			ended = s.ended.Format("15:04:05.000")
		}
		fmt.Fprintf(&b, "[#%d s%d up %s live %s ended %s ids %d-%d %v around %d: %d,%d; pages %v] ", s.n, s.server,
			s.up.Format("15:04:05.000"), s.live.Format("15:04:05.000"), ended, lo, hi, how, id, below, above, s.pages)
	}
	return b.String()
}
