// Package storetest is the contract every store.Store implementation must
// meet. Each implementation's tests call Run with a constructor that returns
// a fresh, empty store, so that SQLite and PostgreSQL are held to exactly the
// same behaviour.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/store"
)

// NewFunc returns a new, empty store for one test. It registers its own
// cleanup with t.Cleanup.
type NewFunc func(t testing.TB) store.Store

// Run runs the whole contract suite against the stores newStore returns.
func Run(t *testing.T, newStore NewFunc) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"CreateAndGetUser", testCreateAndGetUser},
		{"UserNotFound", testUserNotFound},
		{"DuplicateUser", testDuplicateUser},
		{"UsernamesAreExact", testUsernamesAreExact},
		{"ConcurrentRegistration", testConcurrentRegistration},
		{"AddMessage", testAddMessage},
		{"RecentMessagesOrderAndLimit", testRecentMessages},
		{"MessagesBefore", testMessagesBefore},
		{"ClientIDIdempotent", testClientIDIdempotent},
		{"ClientIDPerUser", testClientIDPerUser},
		{"ConcurrentMessages", testConcurrentMessages},
		{"UnicodeAndLargeContent", testUnicode},
		{"MessagesAfter", testMessagesAfter},
		{"Sessions", testSessions},
		{"Presence", testPresence},
		{"Ping", testPing},
		{"CanceledContext", testCanceledContext},
	}
	tests = append(tests, roomTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

func ctx(t testing.TB) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// hash looks like a bcrypt hash; stores treat it as opaque text.
const hash = "$2b$10$abcdefghijklmnopqrstuuWkSXV2P0IQnTB7bbH4GzrYmdrcDgaTW"

func testCreateAndGetUser(t *testing.T, s store.Store) {
	c := ctx(t)
	if err := s.CreateUser(c, store.User{Username: "alice", PasswordHash: hash}); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	got, err := s.User(c, "alice")
	if err != nil {
		t.Fatalf("User: %v", err)
	}
	if want := (store.User{Username: "alice", PasswordHash: hash}); got != want {
		t.Errorf("User = %+v, want %+v", got, want)
	}
}

func testUserNotFound(t *testing.T, s store.Store) {
	_, err := s.User(ctx(t), "nobody")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("User(nobody) error = %v, want ErrNotFound", err)
	}
}

func testDuplicateUser(t *testing.T, s store.Store) {
	c := ctx(t)
	if err := s.CreateUser(c, store.User{Username: "bob", PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	err := s.CreateUser(c, store.User{Username: "bob", PasswordHash: "other"})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateUser error = %v, want ErrConflict", err)
	}
	got, err := s.User(c, "bob")
	if err != nil || got.PasswordHash != hash {
		t.Errorf("after conflict User = %+v, %v; want the first hash kept", got, err)
	}
}

func testUsernamesAreExact(t *testing.T, s store.Store) {
	c := ctx(t)
	for _, name := range []string{"Carol", "carol", "carol "} {
		if err := s.CreateUser(c, store.User{Username: name, PasswordHash: hash + name}); err != nil {
			t.Fatalf("CreateUser(%q): %v", name, err)
		}
	}
	for _, name := range []string{"Carol", "carol", "carol "} {
		got, err := s.User(c, name)
		if err != nil || got.PasswordHash != hash+name {
			t.Errorf("User(%q) = %+v, %v", name, got, err)
		}
	}
}

func testConcurrentRegistration(t *testing.T, s store.Store) {
	c := ctx(t)
	const racers = 8
	for round := range 5 {
		name := fmt.Sprintf("racer%d", round)
		var wg sync.WaitGroup
		errs := make([]error, racers)
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.CreateUser(c, store.User{Username: name, PasswordHash: fmt.Sprint(hash, i)})
			}()
		}
		wg.Wait()
		ok, conflicts := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("%s: unexpected error %v", name, err)
			}
		}
		if ok != 1 || conflicts != racers-1 {
			t.Errorf("%s: %d succeeded, %d conflicts; want 1 and %d", name, ok, conflicts, racers-1)
		}
	}
}

func testAddMessage(t *testing.T, s store.Store) {
	c := ctx(t)
	before := time.Now().Add(-time.Minute)
	m, created, err := s.AddMessage(c, store.Message{Content: "hello", Username: "alice"})
	if err != nil || !created {
		t.Fatalf("AddMessage = %v, created %v", err, created)
	}
	if m.ID <= 0 || m.Content != "hello" || m.Username != "alice" {
		t.Errorf("AddMessage returned %+v", m)
	}
	if m.Time.Before(before) || m.Time.After(time.Now().Add(time.Minute)) {
		t.Errorf("Time = %v, want about now", m.Time)
	}
	got, err := s.RecentMessages(c, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("RecentMessages = %v, %v", got, err)
	}
	if got[0].ID != m.ID || got[0].Content != "hello" || !got[0].Time.Equal(m.Time) {
		t.Errorf("stored %+v, read back %+v", m, got[0])
	}
}

func addN(t *testing.T, s store.Store, n int) []store.Message {
	t.Helper()
	var out []store.Message
	for i := range n {
		m, _, err := s.AddMessage(ctx(t), store.Message{Content: fmt.Sprint("m", i), Username: "u"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func contents(ms []store.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Content
	}
	return out
}

func testRecentMessages(t *testing.T, s store.Store) {
	c := ctx(t)
	empty, err := s.RecentMessages(c, 5)
	if err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("RecentMessages on empty store = %#v, %v; want empty non-nil", empty, err)
	}
	all := addN(t, s, 7)
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Fatalf("ids not increasing: %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	tests := []struct {
		limit int
		want  string
	}{
		{3, "[m4 m5 m6]"},
		{7, "[m0 m1 m2 m3 m4 m5 m6]"},
		{100, "[m0 m1 m2 m3 m4 m5 m6]"},
		{0, "[m0 m1 m2 m3 m4 m5 m6]"},
		{-1, "[m0 m1 m2 m3 m4 m5 m6]"},
	}
	for _, tt := range tests {
		got, err := s.RecentMessages(c, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if g := fmt.Sprint(contents(got)); g != tt.want {
			t.Errorf("RecentMessages(%d) = %s, want %s", tt.limit, g, tt.want)
		}
	}
}

func testMessagesBefore(t *testing.T, s store.Store) {
	c := ctx(t)
	all := addN(t, s, 6)
	tests := []struct {
		name   string
		before int64
		limit  int
		want   string
	}{
		{"page before last", all[5].ID, 2, "[m3 m4]"},
		{"short first page", all[2].ID, 10, "[m0 m1]"},
		{"nothing before first", all[0].ID, 10, "[]"},
		{"beyond the end", all[5].ID + 1000, 3, "[m3 m4 m5]"},
		{"zero limit", all[5].ID, 0, "[]"},
	}
	for _, tt := range tests {
		got, err := s.MessagesBefore(c, tt.before, tt.limit)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got == nil {
			t.Errorf("%s: nil slice, want empty", tt.name)
		}
		if g := fmt.Sprint(contents(got)); g != tt.want {
			t.Errorf("%s: MessagesBefore(%d, %d) = %s, want %s", tt.name, tt.before, tt.limit, g, tt.want)
		}
	}
}

func testClientIDIdempotent(t *testing.T, s store.Store) {
	c := ctx(t)
	first, created, err := s.AddMessage(c, store.Message{Content: "once", Username: "alice", ClientID: "k1"})
	if err != nil || !created {
		t.Fatalf("first AddMessage = %v, created %v", err, created)
	}
	again, created, err := s.AddMessage(c, store.Message{Content: "once", Username: "alice", ClientID: "k1"})
	if err != nil {
		t.Fatalf("repeat AddMessage: %v", err)
	}
	if created {
		t.Error("repeat AddMessage reported created")
	}
	if again.ID != first.ID || again.Content != "once" || again.ClientID != "k1" {
		t.Errorf("repeat returned %+v, want the first %+v", again, first)
	}
	if _, _, err := s.AddMessage(c, store.Message{Content: "plain", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddMessage(c, store.Message{Content: "plain", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.RecentMessages(c, 0)
	if err != nil {
		t.Fatal(err)
	}
	if g, want := fmt.Sprint(contents(all)), "[once plain plain]"; g != want {
		t.Errorf("history = %s, want %s (no client id means no deduplication)", g, want)
	}
}

func testClientIDPerUser(t *testing.T, s store.Store) {
	c := ctx(t)
	for _, u := range []string{"alice", "bob"} {
		_, created, err := s.AddMessage(c, store.Message{Content: "hi from " + u, Username: u, ClientID: "same"})
		if err != nil || !created {
			t.Fatalf("AddMessage(%s) = %v, created %v; a client id is scoped to its user", u, err, created)
		}
	}
}

func testConcurrentMessages(t *testing.T, s store.Store) {
	c := ctx(t)
	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each*2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				// Every message is sent twice, as a client resending
				// after a lost ack would; only one copy may be stored.
				for range 2 {
					if _, _, err := s.AddMessage(c, store.Message{Content: id, Username: "u", ClientID: id}); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("AddMessage: %v", err)
	}
	all, err := s.RecentMessages(c, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != writers*each {
		t.Fatalf("stored %d messages, want %d", len(all), writers*each)
	}
	seen := map[string]bool{}
	for _, m := range all {
		if seen[m.Content] {
			t.Errorf("message %q stored twice", m.Content)
		}
		seen[m.Content] = true
	}
}

func testUnicode(t *testing.T, s store.Store) {
	c := ctx(t)
	big := make([]rune, 5000)
	for i := range big {
		big[i] = 'é'
	}
	texts := []string{"héllo 👋 世界", "<img src=x onerror=alert(1)>", "line\nbreak", "quote ' \" ; --", string(big)}
	for _, text := range texts {
		if _, _, err := s.AddMessage(c, store.Message{Content: text, Username: "名前"}); err != nil {
			t.Fatalf("AddMessage(%.20q): %v", text, err)
		}
	}
	got, err := s.RecentMessages(c, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		if got[i].Content != text || got[i].Username != "名前" {
			t.Errorf("message %d read back as %.30q by %q", i, got[i].Content, got[i].Username)
		}
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.CreateUser(c, store.User{Username: "late", PasswordHash: hash}); err == nil {
		t.Error("CreateUser with a canceled context succeeded")
	}
	if _, err := s.User(ctx(t), "late"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user from a canceled CreateUser exists: %v", err)
	}
}

func testMessagesAfter(t *testing.T, s store.Store) {
	c := ctx(t)
	all := addN(t, s, 5)
	tests := []struct {
		name  string
		after int64
		limit int
		want  string
	}{
		{"from the start", 0, 10, "[m0 m1 m2 m3 m4]"},
		{"limited, oldest first", all[0].ID, 2, "[m1 m2]"},
		{"nothing newer", all[4].ID, 10, "[]"},
		{"zero limit", 0, 0, "[]"},
	}
	for _, tt := range tests {
		got, err := s.MessagesAfter(c, tt.after, tt.limit)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if g := fmt.Sprint(contents(got)); g != tt.want || got == nil {
			t.Errorf("%s: MessagesAfter(%d, %d) = %s, want %s", tt.name, tt.after, tt.limit, g, tt.want)
		}
	}
}

func testSessions(t *testing.T, s store.Store) {
	c := ctx(t)
	now := time.Now()
	live := store.Session{TokenHash: "h-live", Username: "alice", Expires: now.Add(time.Hour)}
	old := store.Session{TokenHash: "h-old", Username: "bob", Expires: now.Add(-time.Second)}
	for _, sess := range []store.Session{live, old} {
		if err := s.CreateSession(c, sess); err != nil {
			t.Fatalf("CreateSession(%s): %v", sess.TokenHash, err)
		}
	}
	if u, err := s.SessionUser(c, "h-live", now); err != nil || u != "alice" {
		t.Errorf("SessionUser(live) = %q, %v; want alice", u, err)
	}
	if _, err := s.SessionUser(c, "h-old", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SessionUser(expired) error = %v, want ErrNotFound", err)
	}
	if _, err := s.SessionUser(c, "h-live", now.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SessionUser after expiry error = %v, want ErrNotFound", err)
	}
	if _, err := s.SessionUser(c, "nope", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SessionUser(unknown) error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(c, "h-live"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionUser(c, "h-live", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SessionUser after delete error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(c, "h-live"); err != nil {
		t.Errorf("deleting a deleted session: %v", err)
	}
}

// testPresence: the online list is every user present on a server that
// heartbeats, once each, in order of first arrival; a server that stops
// heartbeating drops out with its users, and ForgetServer removes one.
func testPresence(t *testing.T, s store.Store) {
	c := ctx(t)
	now, err := s.Heartbeat(c, "A")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Heartbeat(c, "B"); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{{"A", "ann"}, {"B", "bea"}, {"A", "cid"}, {"B", "ann"}, {"A", "ann"}} {
		if err := s.AddPresence(c, p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	since := now.Add(-time.Second)
	got, err := s.OnlineUsers(c, since)
	if err != nil || strings.Join(got, ",") != "ann,bea,cid" {
		t.Fatalf("OnlineUsers = %v, %v; want ann,bea,cid once each, in login order", got, err)
	}
	// B stops heartbeating: only A's users remain once B is stale.
	time.Sleep(10 * time.Millisecond) // B's beat is now older than A's next by that much
	later, _ := s.Heartbeat(c, "A")
	got, _ = s.OnlineUsers(c, later.Add(-time.Millisecond))
	if strings.Join(got, ",") != "ann,cid" {
		t.Errorf("with B stale OnlineUsers = %v, want ann,cid", got)
	}
	if err := s.RemovePresence(c, "A", "ann"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.OnlineUsers(c, since)
	if strings.Join(got, ",") != "bea,cid,ann" && strings.Join(got, ",") != "ann,bea,cid" {
		t.Errorf("after ann left A: %v (ann is still on B)", got)
	}
	if err := s.ForgetServer(c, "B"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.OnlineUsers(c, since)
	if strings.Join(got, ",") != "cid" {
		t.Errorf("after B forgotten and ann gone from A: %v, want cid", got)
	}
}
