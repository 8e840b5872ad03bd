package failover

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"
)

type dbMsg struct {
	id              int64
	user, text, cid string
}

func dbMessages(t *testing.T, dsn string) []dbMsg {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id, username, content, coalesce(client_id, '') FROM chat_history ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []dbMsg
	for rows.Next() {
		var m dbMsg
		rows.Scan(&m.id, &m.user, &m.text, &m.cid)
		out = append(out, m)
	}
	return out
}

// checkInvariants: every submitted message acknowledged once and stored
// once, every user's view equal to the database, nothing missing, and no
// connection given a message id twice, whatever the order of its history,
// live messages and pages (the server keeps each socket's given ids,
// server/given.go; before that, a message came live again after the history
// that had it when a server died between commit and broadcast and the
// sender resent it through another one). It returns how many messages were
// submitted and stored.
func checkInvariants(t *testing.T, dsn string, users []*user) (submitted, stored int) {
	t.Helper()
	rows := dbMessages(t, dsn)
	byCID := map[string][]dbMsg{}
	for _, m := range rows {
		byCID[m.cid] = append(byCID[m.cid], m)
	}
	for _, u := range users {
		u.mu.Lock()
		if len(u.outbox) > 0 {
			t.Errorf("%s: %d messages never acknowledged: %v", u.name, len(u.outbox), u.outbox)
		}
		for cid, id := range u.acked {
			submitted++
			got := byCID[cid]
			if len(got) != 1 {
				t.Errorf("%s: message %s stored %d times", u.name, cid, len(got))
				continue
			}
			if got[0].id != id {
				t.Errorf("%s: message %s acknowledged as id %d, stored as %d", u.name, cid, id, got[0].id)
			}
		}
		var missing []int64
		for _, m := range rows {
			if want := m.user + ":" + m.text; u.seen[m.id] != want {
				missing = append(missing, m.id)
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s: view lacks %d of %d stored messages (ids %v…)", u.name, len(missing), len(rows), missing[:min(5, len(missing))])
		}
		if len(u.seen) != len(rows) {
			t.Errorf("%s: view has %d messages, database %d", u.name, len(u.seen), len(rows))
		}
		var doubles []dup
		for _, s := range u.socks {
			doubles = append(doubles, s.dups...)
		}
		if len(doubles) > 0 {
			t.Errorf("%s: %d messages given twice on one connection: %v", u.name, len(doubles), doubles[:min(5, len(doubles))])
		}
		u.mu.Unlock()
	}
	if len(rows) != submitted {
		t.Errorf("database holds %d messages, users submitted %d", len(rows), submitted)
	}
	return submitted, len(rows)
}

// gaps returns, per sending user, the time from its last acknowledgement
// before t0 to its first after t0.
func gaps(users []*user, t0 time.Time) []time.Duration {
	var out []time.Duration
	for _, u := range users {
		u.mu.Lock()
		var before, after time.Time
		for _, a := range u.acks {
			if a.at.Before(t0) {
				before = a.at
			} else if after.IsZero() {
				after = a.at
			}
		}
		u.mu.Unlock()
		if !before.IsZero() && !after.IsZero() {
			out = append(out, after.Sub(before))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func spread(d []time.Duration) string {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return fmt.Sprintf("p50 %v, p99 %v, max %v", pct(d, 0.5).Round(time.Millisecond),
		pct(d, 0.99).Round(time.Millisecond), pct(d, 1).Round(time.Millisecond))
}

const (
	nUsers   = 50
	nSenders = 25
	// Each sender queues a message this often.
	sendPeriod = 150 * time.Millisecond
)

// front is one way of putting nginx in front of the primary and the backup,
// with the clients that get through it.
type front struct {
	name      string // subtest name
	conf      string // nginx configuration in the repository
	transport string // what every client ends up on through it
}

var (
	// Ours: WebSocket upgrades forwarded, 6 s read timeout, max_fails=1.
	ours = front{"nginx.conf", "nginx.conf", "websocket"}
	// The report's block as printed: no Upgrade forwarded, so every
	// client (socket.io-client included) stays on long-polling; nginx's
	// default 60 s proxy_read_timeout, max_fails=1, fail_timeout=10s.
	report = front{"report", "test/report-nginx.conf", "polling"}
)

// scenario is one way the primary breaks and how soon every client must be
// back on the backup.
type scenario struct {
	name   string
	brk    func(c *cluster)         // signals the primary
	settle func(c *cluster)         // then, if set, waits for it
	target map[string]time.Duration // front name → when every client must be back
	// inFlight: break only while messages are in flight, and report them.
	inFlight bool
}

// Targets. A crash (SIGKILL): the kernel refuses the primary's port at
// once, so nginx moves to the backup at the first request and clients are
// back within 2 s. A graceful stop (SIGTERM): the server hands its clients
// over during its lame-duck time (LAME_DUCK, 3 s), so all are back within
// that plus a margin. A hang (SIGSTOP): clients notice after PING_INTERVAL
// + PING_TIMEOUT (8 s) and nginx.conf's 6 s read timeout moves requests to
// the backup: back within 20 s.
//
// Behind the report's block a hang cannot meet 20 s. The hung primary
// still accepts connections (the kernel does that), and nginx marks it down
// only when a request to it fails, here when one times out after nginx's
// default proxy_read_timeout of 60 s (the first to do so is a poll that was
// out when the primary stopped). Until then every request, each new
// connection's handshake included, goes to the hung primary and waits:
// clients notice the silence after 8 s and try again every 20 s
// (socket.io-client's connect timeout), in vain. The first attempt after
// nginx has marked the primary down reaches the backup: measured 70-71 s
// after the hang (attempts at 8, 28, 48, 68 s; down at about 58 s). The
// bound is what this allows at worst: 60 s + one connect timeout (20 s)
// + 5 s for the reconnection itself (hangReportBound).
//
// The test asserts each target plus noiseMargin: on the shared 2-core
// machines these tests run on, 50 clients reconnecting at once to a
// CPU-starved backup took up to 2.8 s after a crash under -race (1.3-1.9 s
// without), while the time that is failover's own (nginx moving on, the
// clients noticing) is milliseconds. The log says whether the target
// itself was met.
const (
	noiseMargin = 1500 * time.Millisecond
	crashTarget = 2 * time.Second
	lameDuck    = 3 * time.Second // the server's default LAME_DUCK
	stopTarget  = lameDuck + 2*time.Second
	hangTarget  = 20 * time.Second
	// nginx's default proxy_read_timeout (60 s), a connect timeout, and
	// the reconnection: see above.
	hangReportBound = 60*time.Second + dialTimeout + 5*time.Second
)

var (
	kill = scenario{name: "kill", brk: func(c *cluster) { c.signal("primary", syscall.SIGKILL) },
		target: map[string]time.Duration{ours.name: crashTarget, report.name: crashTarget}, inFlight: true}
	stop = scenario{name: "term", brk: func(c *cluster) { c.signal("primary", syscall.SIGTERM) },
		settle: func(c *cluster) { c.waitExit("primary", lameDuck+15*time.Second) }, target: map[string]time.Duration{ours.name: stopTarget, report.name: stopTarget}}
	hang = scenario{name: "hang", brk: func(c *cluster) { c.signal("primary", syscall.SIGSTOP) },
		target: map[string]time.Duration{ours.name: hangTarget, report.name: hangReportBound}}
)

// runFailover starts 50 users through nginx (fr), half of them sending,
// breaks the primary, and checks that everyone is back on the backup within
// the scenario's target with nothing lost or doubled. It returns the
// cluster and users for more, and a function that stops the users.
func runFailover(t *testing.T, fr front, sc scenario) (*cluster, []*user, func()) {
	c := newClusterOf(t, fr.conf, []string{"primary", "backup"})
	target := sc.target[fr.name]
	ctx, cancel := context.WithTimeout(context.Background(), target+90*time.Second)
	t.Cleanup(cancel)

	users := make([]*user, nUsers)
	var wg sync.WaitGroup
	errs := make(chan error, nUsers)
	for i := range users {
		users[i] = newUser(c.url(), fmt.Sprintf("%s%02d", sc.name, i))
		users[i].transport = fr.transport
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := users[i].registerAndLogin(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !strings.Contains(c.logs("primary"), "logged in") || strings.Contains(c.logs("backup"), "logged in") {
		t.Fatal("users did not all land on the primary")
	}

	var sendMu sync.Mutex
	sendOn := true
	sending := func() bool { sendMu.Lock(); defer sendMu.Unlock(); return sendOn }
	chatCtx, stopChat := context.WithCancel(ctx)
	var chatting sync.WaitGroup
	for i, u := range users {
		chatting.Add(1)
		send := sending
		if i >= nSenders {
			send = func() bool { return false }
		}
		go func() { defer chatting.Done(); u.chat(chatCtx, send, sendPeriod) }()
	}
	stopUsers := func() {
		stopChat()
		chatting.Wait()
		for _, u := range users {
			u.close()
		}
	}
	t.Cleanup(stopUsers)

	time.Sleep(2 * time.Second)
	if sc.inFlight {
		// The bad moment: break the primary while several messages are
		// between a client and their acknowledgement.
		waitInFlight(t, users[:nSenders], 3, 5*time.Second)
	}
	t0 := time.Now()
	sc.brk(c)
	var inFlight []string // client ids sent and not yet acknowledged at t0
	for _, u := range users[:nSenders] {
		u.mu.Lock()
		if u.sending != "" {
			inFlight = append(inFlight, u.sending)
		}
		u.mu.Unlock()
	}
	if sc.settle != nil {
		sc.settle(c)
	}
	t.Logf("%s/%s: primary broken at %s with %d messages in flight", fr.name, sc.name, t0.Format("15:04:05.000"), len(inFlight))

	// Everyone must be back: reconnected and resumed, and each sender
	// with a message acknowledged on its new connection. Wait past the
	// target so that the measurement, not the wait, decides.
	waitLimit := target + 20*time.Second
	deadline := time.Now().Add(waitLimit)
	for {
		var stuck []string
		for i, u := range users {
			if _, ok := u.back(t0, i < nSenders); !ok {
				u.mu.Lock()
				stuck = append(stuck, fmt.Sprintf("%s (connects %d, sid %s, outbox %d, last error %v)",
					u.name, len(u.socks), sidOf(u.conn), len(u.outbox), u.lastErr))
				u.mu.Unlock()
			}
		}
		if len(stuck) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s: %d of %d users not back within %v: %v", fr.name, sc.name, len(stuck), nUsers, waitLimit, stuck[:min(5, len(stuck))])
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	sendMu.Lock()
	sendOn = false
	sendMu.Unlock()
	// Drain the outboxes, then let the last deliveries arrive.
	drain(users, 15*time.Second)
	time.Sleep(time.Second)

	var resumed, resent []time.Duration
	for i, u := range users {
		d, _ := u.back(t0, false)
		resumed = append(resumed, d)
		if i < nSenders {
			d, _ := u.back(t0, true)
			resent = append(resent, d)
		}
	}
	g := gaps(users[:nSenders], t0)
	submitted, stored := checkInvariants(t, c.dsn, users)
	reconnects := 0
	for _, u := range users {
		u.mu.Lock()
		reconnects += len(u.socks) - 1
		u.mu.Unlock()
	}
	t.Logf("%s/%s (%s clients): back after the break: all %d users reconnected and resumed %s; "+
		"all %d senders acknowledged again %s (target %v); gap last ack before → first after: %s",
		fr.name, sc.name, fr.transport, nUsers, spread(resumed), nSenders, spread(resent), target, spread(g))
	closes := map[string]int{}
	for _, u := range users {
		u.mu.Lock()
		for k, n := range u.closes {
			closes[k] += n
		}
		u.mu.Unlock()
	}
	t.Logf("%s/%s: %d messages submitted and acknowledged, %d stored, each of %d users saw all of them, "+
		"no connection given one twice; %d reconnects; connections ended by %v",
		fr.name, sc.name, submitted, stored, nUsers, reconnects, closes)
	if len(inFlight) > 0 {
		early := storedBefore(t, c.dsn, inFlight, t0)
		t.Logf("%s/%s: of the %d messages in flight at the break, %d had been stored by the primary (their acknowledgement was lost; "+
			"resent and stored once), %d were not (resent and stored on the backup)", fr.name, sc.name, len(inFlight), early, len(inFlight)-early)
	}
	mx := max(pct(resumed, 1), pct(resent, 1))
	if mx > target+noiseMargin {
		t.Errorf("%s/%s: the last user was back %v after the break, want within %v (+%v for a loaded machine)",
			fr.name, sc.name, mx.Round(time.Millisecond), target, noiseMargin)
	} else if mx > target {
		t.Logf("%s/%s: OVER TARGET: the last user was back %v after the break, target %v; within the margin for a loaded machine",
			fr.name, sc.name, mx.Round(time.Millisecond), target)
	}
	return c, users, stopUsers
}

// waitInFlight waits until at least n senders await an acknowledgement.
func waitInFlight(t *testing.T, senders []*user, n int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		k := 0
		for _, u := range senders {
			u.mu.Lock()
			if u.sending != "" {
				k++
			}
			u.mu.Unlock()
		}
		if k >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never %d messages in flight at once within %v", n, limit)
		}
		time.Sleep(time.Millisecond)
	}
}

// storedBefore counts the messages (by client id) stored before t0.
func storedBefore(t *testing.T, dsn string, cids []string, t0 time.Time) int {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	for _, cid := range cids {
		var at time.Time
		if err := db.QueryRow(`SELECT created_at FROM chat_history WHERE client_id = $1`, cid).Scan(&at); err == nil && at.Before(t0) {
			n++
		}
	}
	return n
}

// TestFailover breaks the primary in three ways (kill, stop, hang) behind
// two nginx configurations: ours with WebSocket clients, and the report's
// block as printed with long-polling clients.
func TestFailover(t *testing.T) {
	for _, fr := range []front{ours, report} {
		t.Run(fr.name, func(t *testing.T) {
			for _, sc := range []scenario{kill, stop, hang} {
				t.Run(sc.name, func(t *testing.T) {
					c, users, stopUsers := runFailover(t, fr, sc)
					if sc.name == "kill" && fr == ours {
						failBack(t, c, users)
					}
					stopUsers()
				})
			}
		})
	}
}

// failBack restarts the primary: new users land on it while the old ones
// stay on the backup, and messages and the online list cross both ways.
func failBack(t *testing.T, c *cluster, old []*user) {
	t.Helper()
	c.start("primary")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// nginx probes the primary again after fail_timeout.
	var fresh *user
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		u := newUser(c.url(), fmt.Sprintf("back%02d", i))
		if err := u.registerAndLogin(ctx); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(c.logs("primary"), "user="+u.name) {
			fresh = u
			break
		}
		u.close()
		if time.Now().After(deadline) {
			t.Fatal("no new connection reached the restarted primary within 20 s")
		}
		time.Sleep(500 * time.Millisecond)
	}
	defer fresh.close()
	veteran := old[0]
	if strings.Contains(c.logs("primary"), "user="+veteran.name) {
		t.Fatalf("%s moved back to the primary; old connections should stay on the backup", veteran.name)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("fail-back: %s within 5 s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the veteran on the backup sees the newcomer on the primary online", func() bool {
		veteran.mu.Lock()
		defer veteran.mu.Unlock()
		return slices.Contains(veteran.online, fresh.name)
	})
	for _, dir := range []struct {
		from, to *user
	}{{fresh, veteran}, {veteran, fresh}} {
		text := "crossing from " + dir.from.name
		a, err := dir.from.call(ctx, "send message", text)
		if err != nil || a["success"] != true {
			t.Fatalf("send: %v %v", a, err)
		}
		id := int64(a["id"].(float64))
		waitFor(text+" arrives", func() bool {
			dir.to.mu.Lock()
			defer dir.to.mu.Unlock()
			return dir.to.seen[id] == dir.from.name+":"+text
		})
	}
	if a, err := fresh.call(ctx, "logout"); err != nil || a["success"] != true {
		t.Fatal(a, err)
	}
	waitFor("the newcomer's logout reaches the veteran's list", func() bool {
		veteran.mu.Lock()
		defer veteran.mu.Unlock()
		return !slices.Contains(veteran.online, fresh.name)
	})
	t.Logf("fail-back: new connections on the restarted primary, old ones on the backup, messages and the online list cross both ways")
}
