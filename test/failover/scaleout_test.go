package failover

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
)

// TestScaleOut runs three active servers behind nginx-cluster.conf. Users
// come from different loopback addresses so that nginx's address hash
// spreads them. Messages and the online list cross all three; then one
// server is killed under load, and then all three are restarted one at a
// time; the invariants of the failover test hold throughout.
func TestScaleOut(t *testing.T) {
	for _, bus := range []string{"postgres", "nats"} {
		t.Run(bus, func(t *testing.T) { testScaleOut(t, bus) })
	}
}

func testScaleOut(t *testing.T, busKind string) {
	var env []string
	if busKind == "nats" {
		env = append(env, "BUS_URL="+natsURL(t))
	}
	names := []string{"s0", "s1", "s2"}
	c := newClusterOf(t, "nginx-cluster.conf", names, env...)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	const n, senders, passive = 36, 18, 6
	users := make([]*user, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range users {
		users[i] = newUser(c.url(), fmt.Sprintf("%s%02d", busKind[:2], i))
		users[i].local = fmt.Sprintf("127.0.0.%d", 10+i)
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
	home := map[string]string{} // user → server
	for _, u := range users {
		for _, s := range names {
			if strings.Contains(c.logs(s), "logged in\" sid=") && strings.Contains(c.logs(s), "user="+u.name+"\n") {
				home[u.name] = s
			}
		}
	}
	perServer := map[string]int{}
	for _, s := range home {
		perServer[s]++
	}
	t.Logf("%s bus: users per server after login: %v", busKind, perServer)
	for _, s := range names {
		if perServer[s] == 0 {
			t.Fatalf("nginx's hash gave server %s no user: %v", s, perServer)
		}
	}

	everyoneSees := func(what string, want func(online []string) bool, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			ok := true
			for _, u := range users {
				u.mu.Lock()
				good := want(u.online)
				u.mu.Unlock()
				if !good && !u.passive {
					ok = false
				}
			}
			if ok {
				return time.Since(start)
			}
			if time.Since(start) > limit {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	all := make([]string, n)
	for i, u := range users {
		all[i] = u.name
	}
	everyoneSees("every user sees all users online, on all servers", func(o []string) bool {
		for _, name := range all {
			if !slices.Contains(o, name) {
				return false
			}
		}
		return true
	}, 10*time.Second)

	// Some users of s1 will not come back after it dies: closed browsers.
	var gone []string
	for _, u := range users[senders:] {
		if home[u.name] == "s1" && len(gone) < passive {
			u.passive = true
			gone = append(gone, u.name)
		}
	}

	var sendMu sync.Mutex
	sendOn := true
	sending := func() bool { sendMu.Lock(); defer sendMu.Unlock(); return sendOn }
	chatCtx, stopChat := context.WithCancel(ctx)
	var chatting sync.WaitGroup
	for i, u := range users {
		if u.passive {
			continue
		}
		send := sending
		if i >= senders {
			send = func() bool { return false }
		}
		chatting.Add(1)
		go func() { defer chatting.Done(); u.chat(chatCtx, send, 200*time.Millisecond) }()
	}
	time.Sleep(2 * time.Second)

	// Kill one of three.
	t0 := time.Now()
	c.signal("s1", syscall.SIGKILL)
	for _, u := range users {
		if u.passive {
			u.close()
		}
	}
	if len(gone) > 0 {
		took := everyoneSees("the dead server's departed users leave everyone's list", func(o []string) bool {
			for _, g := range gone {
				if slices.Contains(o, g) {
					return false
				}
			}
			return true
		}, 20*time.Second)
		t.Logf("%s bus: %d users of the killed server who did not come back left the online list after %v",
			busKind, len(gone), took.Round(100*time.Millisecond))
	}
	waitBack(t, users[:senders], t0, 20*time.Second)
	g := gaps(users[:senders], t0)
	t.Logf("%s bus: kill one of three: gap p50 %v, max %v over %d senders", busKind,
		pct(g, 0.5).Round(time.Millisecond), pct(g, 1).Round(time.Millisecond), len(g))
	c.start("s1")

	// Rolling restart: each server in turn stops gracefully and comes back.
	for _, s := range names {
		t1 := time.Now()
		c.signal(s, syscall.SIGTERM)
		c.waitExit(s, 20*time.Second)
		c.start(s)
		waitBack(t, users[:senders], t1, 25*time.Second)
	}
	time.Sleep(time.Second)
	sendMu.Lock()
	sendOn = false
	sendMu.Unlock()
	drain(users, 15*time.Second)
	time.Sleep(1500 * time.Millisecond)
	stopChat()
	chatting.Wait()
	for _, u := range users {
		u.close()
	}
	active := slices.DeleteFunc(slices.Clone(users), func(u *user) bool { return u.passive })
	submitted, stored := checkInvariants(t, c.dsn, active)
	t.Logf("%s bus: kill-one and rolling restart of 3 servers: %d messages submitted and acknowledged, %d stored, "+
		"each of %d users saw all of them, no connection given one twice", busKind, submitted, stored, len(active))
}

// waitBack waits until every sender has an acknowledgement after t0.
func waitBack(t *testing.T, senders []*user, t0 time.Time, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		back := 0
		var stuck []string
		for _, u := range senders {
			u.mu.Lock()
			if k := len(u.acks); k > 0 && u.acks[k-1].at.After(t0) {
				back++
			} else {
				connected := u.conn != nil && u.conn.Err() == nil
				stuck = append(stuck, fmt.Sprintf("%s (connected %v, sid %s, outbox %d, connects %d, last error %v)",
					u.name, connected, sidOf(u.conn), len(u.outbox), len(u.socks), u.lastErr))
			}
			u.mu.Unlock()
		}
		if back == len(senders) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d senders acknowledged again within %v; stuck: %v", back, len(senders), limit, stuck)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drain waits until every outbox is empty, bounded.
func drain(users []*user, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		left := 0
		for _, u := range users {
			u.mu.Lock()
			left += len(u.outbox)
			u.mu.Unlock()
		}
		if left == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sidOf(c interface{ Err() error }) string {
	if sc, ok := c.(*sioclient.Conn); ok && sc != nil {
		return sc.SID
	}
	return "-"
}
