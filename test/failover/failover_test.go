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

	"github.com/chatd/chat/internal/sioclient"
	_ "github.com/lib/pq"
)

// user is one person chatting through nginx with what our browser client
// does: a session token presented on every reconnect and an outbox of
// unacknowledged messages, resent with their ids until acknowledged.
type user struct {
	name, url string
	local     string // source address to connect from; "" for any
	passive   bool   // closed for good at some point: not checked at the end
	lastErr   error  // the last send or connect failure, for diagnosis

	mu sync.Mutex
	// Fields below are guarded by mu.
	token    string
	conn     *sioclient.Conn
	seen     map[int64]string // every message this user was shown: id → "user:text"
	liveDups int              // a `new message` repeated on one connection
	live     map[int64]bool   // ids delivered live on the current connection
	online   []string         // the last `get users`
	outbox   []pending
	acked    map[string]int64 // client id → server id
	ackTimes []time.Time
	connects int
	resumed  chan struct{} // closed when the current connection's session is confirmed
}

type pending struct{ cid, text string }

func newUser(url, name string) *user {
	return &user{name: name, url: url, seen: map[int64]string{}, acked: map[string]int64{}}
}

func (u *user) onEvent(name string, args []any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch name {
	case "load all messages":
		list, _ := args[0].([]any)
		for _, it := range list {
			u.record(it)
		}
	case "new message":
		if id := u.record(args[0]); id != 0 {
			if u.live[id] {
				u.liveDups++
			}
			u.live[id] = true
		}
	case "get users":
		u.online = u.online[:0]
		list, _ := args[0].([]any)
		for _, x := range list {
			u.online = append(u.online, fmt.Sprint(x))
		}
	case "session":
		m, _ := args[0].(map[string]any)
		if m["username"] == u.name && u.resumed != nil {
			close(u.resumed)
			u.resumed = nil
		}
	}
}

func (u *user) record(v any) int64 {
	m, _ := v.(map[string]any)
	id, _ := m["id"].(float64)
	if id == 0 {
		return 0
	}
	u.seen[int64(id)] = fmt.Sprint(m["user"], ":", m["msg"])
	return int64(id)
}

// connect dials through nginx until it works (bounded by ctx) and, with a
// token, waits until the server confirms the resumed session.
func (u *user) connect(ctx context.Context) error {
	for {
		u.mu.Lock()
		token := u.token
		resumed := make(chan struct{})
		u.resumed = resumed
		u.live = map[int64]bool{}
		u.mu.Unlock()
		var auth map[string]any
		if token != "" {
			auth = map[string]any{"token": token}
		}
		// socket.io-client waits 20 s for a connection; a shorter wait
		// would give up before nginx (6 s read timeout) moves on from a
		// hung primary to the backup.
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		conn, err := sioclient.Dial(dctx, u.url, sioclient.Options{Auth: auth, OnEvent: u.onEvent, LocalAddr: u.local})
		cancel()
		if err == nil && token != "" {
			select {
			case <-resumed:
			case <-conn.Done():
				err = conn.Err()
			case <-time.After(3 * time.Second):
				conn.Close()
				err = fmt.Errorf("session not resumed")
			}
		}
		if err == nil {
			u.mu.Lock()
			u.conn = conn
			u.connects++
			u.mu.Unlock()
			return nil
		}
		u.mu.Lock()
		u.lastErr = fmt.Errorf("connect attempt: %w", err)
		u.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: reconnecting: %v (last error %v)", u.name, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (u *user) current() *sioclient.Conn {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conn
}

// call sends one event on the current connection.
func (u *user) call(ctx context.Context, ev string, args ...any) (map[string]any, error) {
	c := u.current()
	if c == nil {
		return nil, fmt.Errorf("not connected")
	}
	limit := 3 * time.Second
	if ev == "register" || ev == "login" {
		limit = 20 * time.Second // bcrypt queues under a login storm
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	a, err := c.Call(cctx, ev, args...)
	if err != nil {
		return nil, err
	}
	m, _ := a[0].(map[string]any)
	return m, nil
}

func (u *user) registerAndLogin(ctx context.Context) error {
	if err := u.connect(ctx); err != nil {
		return err
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

// flush sends the outbox, oldest first; it stops at the first failure and
// leaves the rest for the next attempt.
func (u *user) flush(ctx context.Context) error {
	for {
		u.mu.Lock()
		if len(u.outbox) == 0 {
			u.mu.Unlock()
			return nil
		}
		p := u.outbox[0]
		u.mu.Unlock()
		a, err := u.call(ctx, "send message", p.text, map[string]any{"id": p.cid})
		if err != nil {
			return err
		}
		if a["success"] != true {
			return fmt.Errorf("%s: send refused: %v", u.name, a)
		}
		id, _ := a["id"].(float64)
		u.mu.Lock()
		if _, dup := u.acked[p.cid]; dup {
			u.mu.Unlock()
			return fmt.Errorf("%s: message %s acknowledged twice", u.name, p.cid)
		}
		u.acked[p.cid] = int64(id)
		u.ackTimes = append(u.ackTimes, time.Now())
		u.outbox = u.outbox[1:]
		u.mu.Unlock()
	}
}

// chat runs the user until ctx ends: reconnecting when the connection drops,
// and while sending is true, queueing one message every period.
func (u *user) chat(ctx context.Context, sending func() bool, period time.Duration) {
	n := 0
	tick := time.NewTicker(period)
	defer tick.Stop()
	for ctx.Err() == nil {
		c := u.current()
		if c == nil || c.Err() != nil {
			if c != nil {
				c.Close()
			}
			if err := u.connect(ctx); err != nil {
				return
			}
		}
		if sending() {
			n++
			u.mu.Lock()
			u.outbox = append(u.outbox, pending{cid: fmt.Sprintf("%s-%d", u.name, n), text: fmt.Sprintf("%s says %d", u.name, n)})
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
		case <-c.Done():
		}
	}
}

func (u *user) close() {
	if c := u.current(); c != nil {
		c.Close()
	}
}

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
// once, and every user's view equal to the database, nothing missing,
// nothing doubled.
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
		if u.liveDups > 0 {
			t.Errorf("%s: %d messages delivered twice on one connection", u.name, u.liveDups)
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
		for _, at := range u.ackTimes {
			if at.Before(t0) {
				before = at
			} else if after.IsZero() {
				after = at
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

const (
	nUsers   = 50
	nSenders = 25
)

// The targets are 2 s after a crash and 20 s after a hang; the test prints
// the measured gaps. It fails only far beyond them (a failover that does not
// happen), since these shared machines are too noisy for timed assertions.
const (
	crashBound = 10 * time.Second
	hangBound  = 40 * time.Second
)

// runFailover starts 50 users through nginx, half of them sending, breaks
// the primary with brk, and checks that everyone carries on on the backup
// with nothing lost or doubled. It returns the cluster and users for more.
func runFailover(t *testing.T, scenario string, brk func(c *cluster), maxGap time.Duration) (*cluster, []*user, context.CancelFunc) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)

	users := make([]*user, nUsers)
	var wg sync.WaitGroup
	errs := make(chan error, nUsers)
	for i := range users {
		users[i] = newUser(c.url(), fmt.Sprintf("%s%02d", scenario, i))
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
		go func() { defer chatting.Done(); u.chat(chatCtx, send, 150*time.Millisecond) }()
	}

	time.Sleep(2 * time.Second)
	t0 := time.Now()
	brk(c)
	t.Logf("%s: primary broken at %s", scenario, t0.Format("15:04:05.000"))

	// Everyone must be back (reconnected and resumed) and sending again.
	deadline := time.Now().Add(maxGap + 10*time.Second)
	for {
		back := 0
		for _, u := range users[:nSenders] {
			u.mu.Lock()
			if n := len(u.ackTimes); n > 0 && u.ackTimes[n-1].After(t0) {
				back++
			}
			u.mu.Unlock()
		}
		if back == nSenders {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: only %d of %d senders acknowledged again within %v", scenario, back, nSenders, maxGap+10*time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	sendMu.Lock()
	sendOn = false
	sendMu.Unlock()
	// Drain the outboxes, then let the last deliveries arrive.
	drainBy := time.Now().Add(15 * time.Second)
	for {
		left := 0
		for _, u := range users {
			u.mu.Lock()
			left += len(u.outbox)
			u.mu.Unlock()
		}
		if left == 0 || time.Now().After(drainBy) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)

	g := gaps(users[:nSenders], t0)
	submitted, stored := checkInvariants(t, c.dsn, users)
	reconnects := 0
	for _, u := range users {
		u.mu.Lock()
		reconnects += u.connects - 1
		u.mu.Unlock()
	}
	t.Logf("%s: failover gap (last ack before → first ack after) over %d senders: p50 %v, p99 %v, max %v; "+
		"%d messages submitted and acknowledged, %d stored, each of %d users saw all of them; %d reconnects",
		scenario, len(g), pct(g, 0.5).Round(time.Millisecond), pct(g, 0.99).Round(time.Millisecond),
		pct(g, 1).Round(time.Millisecond), submitted, stored, nUsers, reconnects)
	if mx := pct(g, 1); mx > maxGap {
		t.Errorf("%s: max failover gap %v, want under %v", scenario, mx, maxGap)
	}
	stop := func() {
		stopChat()
		chatting.Wait()
		for _, u := range users {
			u.close()
		}
	}
	t.Cleanup(stop)
	return c, users, stop
}

func TestFailoverKill(t *testing.T) {
	c, users, stop := runFailover(t, "kill", func(c *cluster) { c.signal("primary", syscall.SIGKILL) }, crashBound)
	failBack(t, c, users)
	stop()
}

func TestFailoverGracefulStop(t *testing.T) {
	_, _, stop := runFailover(t, "term", func(c *cluster) {
		c.signal("primary", syscall.SIGTERM)
		c.waitExit("primary", 15*time.Second)
	}, crashBound)
	stop()
}

func TestFailoverHang(t *testing.T) {
	_, _, stop := runFailover(t, "hang", func(c *cluster) { c.signal("primary", syscall.SIGSTOP) }, hangBound)
	stop()
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
