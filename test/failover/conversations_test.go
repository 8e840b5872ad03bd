package failover

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
)

// TestScaleOutConversations: rooms, direct messages, typing, edits and
// leaves across three real servers on one PostgreSQL, with each bus; then
// a server is killed and its users, resuming their sessions on another,
// are in their rooms there. Members get everything of their rooms on every
// server; others get nothing.
func TestScaleOutConversations(t *testing.T) {
	for _, bus := range []string{"postgres", "nats"} {
		t.Run(bus, func(t *testing.T) { testScaleOutConversations(t, bus) })
	}
}

// talker is one user's socket, straight to one server, recording events.
type talker struct {
	t     *testing.T
	name  string
	token string

	mu     sync.Mutex
	conn   *sioclient.Conn
	events []talkEvent
}

type talkEvent struct {
	name string
	arg  map[string]any
}

func (k *talker) dial(url string) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := sioclient.Options{OnEvent: func(name string, args []any) {
		var arg map[string]any
		if len(args) > 0 {
			arg, _ = args[0].(map[string]any)
		}
		k.mu.Lock()
		k.events = append(k.events, talkEvent{name, arg})
		k.mu.Unlock()
	}}
	if k.token != "" {
		opts.Auth = map[string]any{"token": k.token}
	}
	c, err := sioclient.Dial(ctx, url, opts)
	if err != nil {
		k.t.Fatalf("%s: dial %s: %v", k.name, url, err)
	}
	k.mu.Lock()
	k.conn = c
	k.mu.Unlock()
	k.t.Cleanup(func() { c.Close() })
}

func (k *talker) call(ev string, arg any) map[string]any {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k.mu.Lock()
	c := k.conn
	k.mu.Unlock()
	a, err := c.Call(ctx, ev, arg)
	if err != nil {
		k.t.Fatalf("%s: %s: %v", k.name, ev, err)
	}
	m, _ := a[0].(map[string]any)
	return m
}

func (k *talker) ok(ev string, arg any) map[string]any {
	k.t.Helper()
	m := k.call(ev, arg)
	if m["success"] != true {
		k.t.Fatalf("%s: %s %v: %v", k.name, ev, arg, m)
	}
	return m
}

// has reports whether k received ev whose field key is val.
func (k *talker) has(ev, key string, val any) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, e := range k.events {
		if e.name == ev && e.arg != nil && e.arg[key] == val {
			return true
		}
	}
	return false
}

// waitCount waits until k has received n events named ev.
func (k *talker) waitCount(ev string, n int) {
	k.t.Helper()
	count := func() int {
		k.mu.Lock()
		defer k.mu.Unlock()
		got := 0
		for _, e := range k.events {
			if e.name == ev {
				got++
			}
		}
		return got
	}
	for deadline := time.Now().Add(10 * time.Second); count() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			k.t.Fatalf("%s: %d %q events within 10 s, want %d", k.name, count(), ev, n)
		}
	}
}

func (k *talker) wait(ev, key string, val any) {
	k.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !k.has(ev, key, val); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			k.t.Fatalf("%s: no %q with %s = %v within 10 s", k.name, ev, key, val)
		}
	}
}

func testScaleOutConversations(t *testing.T, busKind string) {
	var env []string
	if busKind == "nats" {
		env = append(env, "BUS_URL="+natsURL(t))
	}
	names := []string{"s0", "s1", "s2"}
	c := newClusterOf(t, "nginx-cluster.conf", names, env...)
	url := func(s string) string { return fmt.Sprintf("http://127.0.0.1:%d", c.ports[s]) }

	// Six users, two per server.
	ks := make([]*talker, 6)
	for i := range ks {
		k := &talker{t: t, name: fmt.Sprintf("%sc%d", busKind[:2], i)}
		k.dial(url(names[i%3]))
		k.ok("register", map[string]any{"username": k.name, "password": "pw"})
		k.token, _ = k.ok("login", map[string]any{"username": k.name, "password": "pw"})["token"].(string)
		ks[i] = k
	}
	members, others := ks[:4], ks[4:]

	room := ks[0].ok("create room", map[string]any{"name": busKind + " room"})["room"].(map[string]any)["id"]
	for _, k := range members[1:] {
		k.ok("join room", map[string]any{"room": room})
	}
	for _, k := range members {
		id := k.ok("send room message", map[string]any{"room": room, "msg": "from " + k.name})["id"]
		for _, to := range members {
			to.wait("room message", "id", id)
		}
	}
	dm := ks[0].ok("send direct message", map[string]any{"to": ks[5].name, "msg": "between us"})
	ks[5].wait("room message", "id", dm["id"])
	ks[1].ok("typing", map[string]any{"room": room})
	for _, k := range []*talker{ks[0], ks[2], ks[3]} {
		k.wait("typing", "user", ks[1].name)
	}
	first := ks[0].ok("send room message", map[string]any{"room": room, "msg": "typo"})["id"]
	ks[0].ok("edit message", map[string]any{"message": first, "msg": "fixed"})
	for _, k := range members {
		k.wait("message edited", "msg", "fixed")
	}

	// ks[2] leaves through its server (s2) while a second tab of it is on
	// s0; ks[3] is on s0, ks[1] on s1. s0 has applied the leave once the
	// tab hears `rooms changed`.
	tab := &talker{t: t, name: ks[2].name + " tab", token: ks[2].token}
	tab.dial(url("s0"))
	tab.wait("session", "username", ks[2].name)
	ks[2].ok("leave room", map[string]any{"room": room})
	tab.waitCount("rooms changed", 1)
	after := ks[1].ok("send room message", map[string]any{"room": room, "msg": "after the leave"})["id"]
	ks[3].wait("room message", "id", after)

	// s1 dies; its users resume their sessions on s0 and are in their
	// rooms there.
	c.signal("s1", syscall.SIGKILL)
	c.waitExit("s1", 10*time.Second)
	for _, k := range []*talker{ks[1], ks[4]} {
		k.dial(url("s0"))
		k.wait("session", "username", k.name)
	}
	late := ks[3].ok("send room message", map[string]any{"room": room, "msg": "after the failover"})["id"]
	ks[1].wait("room message", "id", late)
	ks[0].ok("typing", map[string]any{"room": room})
	ks[1].wait("typing", "user", ks[0].name)

	// A fence: a general message sent last reaches everyone; by then
	// anything wrongly sent would have arrived too.
	fence := ks[0].ok("send message", "fence")["id"]
	for _, k := range ks {
		k.wait("new message", "id", fence)
	}
	for _, k := range others {
		for _, ev := range []string{"room message", "typing", "message edited"} {
			if k.has(ev, "room", room) {
				t.Errorf("%s, not a member, got %s of the room", k.name, ev)
			}
		}
	}
	if ks[4].has("room message", "id", dm["id"]) || ks[1].has("room message", "id", dm["id"]) {
		t.Error("a direct message reached a third user")
	}
	for _, k := range []*talker{ks[2], tab} {
		for _, id := range []any{after, late} {
			if k.has("room message", "id", id) {
				t.Errorf("%s got message %v of a room it left", k.name, id)
			}
		}
	}
}
