package server_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chat/internal/testpg"
	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store"
)

// openLimits lifts the rate limits, so that every attempt of the privacy
// test reaches the permission checks instead of a "too fast" answer.
var openLimits = server.Limits{
	MessagesPerUser: 1e6, MessageBurst: 1e6,
	PagesPerSocket: 1e6, PageBurst: 1e6,
	RoomOpsPerUser: 1e6, RoomOpsBurst: 1e6,
}

// TestPrivacy plays a user who is in none of the private conversations,
// and a socket that is not logged in, trying every event on every room id
// and message id there is and some that are guessed, while the members
// keep talking, typing and editing, on this server and on another one.
// Nothing of a private room may reach them: no answer, no broadcast. And
// the refusals must not tell an existing private room or message from a
// missing one: one text for both.
func TestPrivacy(t *testing.T) {
	testPrivacy(t, openSQLite(t))
}

func TestPrivacyOnPostgres(t *testing.T) {
	testPrivacy(t, openPostgres(t, testpg.New(t)))
}

func testPrivacy(t *testing.T, st store.Store) {
	b := &memBus{}
	cfg := server.Config{Bus: b, Limits: openLimits}
	cfg.ServerID = "A"
	a := startServer(t, cfg, st)
	cfg.ServerID = "B"
	bsrv := startServer(t, cfg, st)

	alice, bob := a.user(t, "p_alice"), bsrv.user(t, "p_bob")
	carol := a.user(t, "p_carol")
	mallory := a.user(t, "p_mallory")
	malloryB := bsrv.user(t, "p_mallory") // the intruder on the other server too
	anon := a.connect(t, "anon", "websocket")
	anon.waitEvent("load all messages", nil)
	intruders := []*tclient{mallory, malloryB, anon}

	// The secrets: a direct room of alice and bob, another of bob and
	// carol, and a public room mallory has not joined. Every private line
	// contains "SECRET".
	dm := alice.call("send direct message", map[string]any{"to": "p_bob", "msg": "SECRET hello bob"})
	wantAck(t, "dm", dm, success)
	dmRoom := dm["room"].(float64)
	dm2 := bob.call("send direct message", map[string]any{"to": "p_carol", "msg": "SECRET hello carol"})
	wantAck(t, "dm2", dm2, success)
	club := roomIDOf(t, alice.call("create room", map[string]any{"name": "the club"}))
	wantAck(t, "carol joins the club", carol.call("join room", map[string]any{"room": club}), success)
	var secretIDs []float64
	say := func(c *tclient, ev string, arg map[string]any) {
		t.Helper()
		ack := c.call(ev, arg)
		wantAck(t, ev, ack, success)
		secretIDs = append(secretIDs, ack["id"].(float64))
	}
	secretIDs = append(secretIDs, dm["id"].(float64), dm2["id"].(float64))
	for i := range 5 {
		say(alice, "send room message", map[string]any{"room": dmRoom, "msg": fmt.Sprint("SECRET dm line ", i)})
		say(bob, "send room message", map[string]any{"room": dmRoom, "msg": fmt.Sprint("SECRET dm reply ", i)})
		say(carol, "send room message", map[string]any{"room": club, "msg": fmt.Sprint("SECRET club line ", i)})
	}
	wantAck(t, "general", alice.call("send message", "public words for everyone"), success)
	maxRoom := math.Max(math.Max(dmRoom, dm2["room"].(float64)), club)
	maxMsg := secretIDs[len(secretIDs)-1] + 1

	// While the intruders try, the members go on: lines, typing, edits
	// and deletes of private messages, through both servers.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			// Each waits for its answer (errors are the intruders'
			// business to find, not this goroutine's).
			call := func(c *tclient, ev string, arg map[string]any) {
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				defer cancel()
				c.conn.Call(ctx, ev, arg)
			}
			call(alice, "send room message", map[string]any{"room": dmRoom, "msg": fmt.Sprint("SECRET live ", i)})
			call(bob, "typing", map[string]any{"room": dmRoom})
			call(carol, "typing", map[string]any{"room": club})
			call(carol, "send room message", map[string]any{"room": club, "msg": fmt.Sprint("SECRET club live ", i)})
			call(alice, "edit message", map[string]any{"message": dm["id"], "msg": fmt.Sprint("SECRET edited ", i)})
			if i == 3 {
				call(bob, "delete message", map[string]any{"message": secretIDs[3]})
			}
		}
	}()

	attempts := 0
	leaks := 0
	// Messages an intruder wrote itself (to general, which it may) are
	// its own to edit and delete.
	own := map[float64]bool{}
	// try sends one request; allowed lists the answers that are fine.
	try := func(c *tclient, ev string, arg any, allowed ...string) map[string]any {
		t.Helper()
		attempts++
		ack := c.call(ev, arg)
		if strings.Contains(fmt.Sprint(ack), "SECRET") {
			leaks++
			t.Errorf("%s: %s %v answered with a private line: %v", c.name, ev, arg, ack)
		}
		if ack["success"] == true {
			return ack
		}
		msg, _ := ack["message"].(string)
		for _, a := range allowed {
			if msg == a {
				return ack
			}
		}
		t.Errorf("%s: %s %v answered %v, want one of %q", c.name, ev, arg, ack, allowed)
		return ack
	}
	const noMessage = "No such message of yours"
	notLoggedIn := "Not logged in"

	// Room ids: every one that exists and some beyond, then guesses.
	var roomIDs []any
	for id := 0; id <= int(maxRoom)+20; id++ {
		roomIDs = append(roomIDs, float64(id))
	}
	roomIDs = append(roomIDs, -1.0, 1.5, 1e15, float64(1<<53), 1e300, "2", nil, true, []any{dmRoom}, map[string]any{"id": dmRoom})

	for _, c := range intruders {
		for _, room := range roomIDs {
			private := room != float64(1) // general is everyone's
			shape := []string{noRoom, "Expected {room: room id}", "Expected {room: room id, before?: message id, limit?: 1 to 100}",
				"Expected {room: room id, msg: text, id?: resend key}", "Expected {room: room id, message: message id}", notLoggedIn}
			ack := try(c, "room history", map[string]any{"room": room}, shape...)
			if private && ack["success"] == true {
				t.Errorf("%s read room %v: %v", c.name, room, ack)
			}
			for _, before := range []any{maxMsg, float64(2), 1e15} {
				ack = try(c, "room history", map[string]any{"room": room, "before": before, "limit": 100}, shape...)
				if private && ack["success"] == true {
					t.Errorf("%s paged room %v: %v", c.name, room, ack)
				}
			}
			ack = try(c, "send room message", map[string]any{"room": room, "msg": "let me in"}, shape...)
			if private && ack["success"] == true {
				t.Errorf("%s wrote to room %v", c.name, room)
			}
			if id, _ := ack["id"].(float64); id > 0 {
				own[id] = true
			}
			if room != club { // a public room anyone may join, by design
				ack = try(c, "join room", map[string]any{"room": room}, shape...)
				if private && ack["success"] == true {
					t.Errorf("%s joined room %v", c.name, room)
				}
			}
			try(c, "leave room", map[string]any{"room": room}, append(shape, "You cannot leave this room")...)
			ack = try(c, "mark read", map[string]any{"room": room, "message": maxMsg}, shape...)
			if private && ack["success"] == true {
				t.Errorf("%s marked room %v read", c.name, room)
			}
			ack = try(c, "typing", map[string]any{"room": room}, append(shape, "Typing notices are limited to one every 2 seconds per room", "You are sending typing notices too fast")...)
			if private && ack["success"] == true {
				t.Errorf("%s typed in room %v", c.name, room)
			}
		}
		// Message ids: every one that exists, some beyond, and guesses.
		var msgIDs []any
		for id := float64(-1); id <= maxMsg+20; id++ {
			msgIDs = append(msgIDs, id)
		}
		msgIDs = append(msgIDs, float64(1<<31-1), float64(1<<31), 1e15, float64(1<<53), 2.5, "3", nil, true)
		for _, id := range msgIDs {
			shapeE := []string{noMessage, "Expected {message: message id, msg: text, id?: resend key}", notLoggedIn}
			shapeD := []string{noMessage, "Expected {message: message id, id?: resend key}", notLoggedIn}
			n, _ := id.(float64)
			if ack := try(c, "edit message", map[string]any{"message": id, "msg": "mine now"}, shapeE...); ack["success"] == true && !own[n] {
				t.Errorf("%s edited message %v", c.name, id)
			}
			if ack := try(c, "delete message", map[string]any{"message": id}, shapeD...); ack["success"] == true && !own[n] {
				t.Errorf("%s deleted message %v", c.name, id)
			}
			for _, room := range []any{1.0, dmRoom, club} {
				try(c, "mark read", map[string]any{"room": room, "message": id}, noRoom, "Expected {room: room id, message: message id}", notLoggedIn)
			}
			try(c, "load older messages", map[string]any{"before": id, "limit": 100}, "Expected {before: message id, limit: 1 to 100}")
		}
		// Search: the private words, everything, syntax, paging.
		for _, q := range []string{"SECRET", "secret", "dm", "club", "line", "hello", "bob", "edited", "live", "*", "SECRET*",
			`"SECRET dm"`, "SECRET OR public", "NOT public", "room_id:2", "' OR 1=1 --", "%", "_", "\x00", strings.Repeat("SECRET ", 100)} {
			for _, before := range []any{nil, maxMsg, 1e15} {
				ack := try(c, "search", map[string]any{"q": q, "before": before, "limit": 100})
				for _, it := range asList(ack["messages"]) {
					if m, _ := it.(map[string]any); m["room"] != float64(1) {
						leaks++
						t.Errorf("%s: search %q found %v", c.name, q, m)
					}
				}
			}
		}
		// Existing private rooms and missing ones get the same answer,
		// event by event: nothing tells them apart.
		for _, probe := range []struct {
			ev  string
			arg func(room any) map[string]any
		}{
			{"room history", func(r any) map[string]any { return map[string]any{"room": r} }},
			{"room history", func(r any) map[string]any { return map[string]any{"room": r, "before": 5} }},
			{"send room message", func(r any) map[string]any { return map[string]any{"room": r, "msg": "hi"} }},
			{"join room", func(r any) map[string]any { return map[string]any{"room": r} }},
			{"leave room", func(r any) map[string]any { return map[string]any{"room": r} }},
			{"mark read", func(r any) map[string]any { return map[string]any{"room": r, "message": 3} }},
			{"typing", func(r any) map[string]any { return map[string]any{"room": r} }},
		} {
			var answers []string
			rooms := []any{dmRoom, dm2["room"], 999_999.0, 1e15}
			if probe.ev != "join room" && probe.ev != "leave room" {
				// Joining a public room, or leaving one you are not in,
				// works: public rooms are listed to everyone anyway.
				rooms = append(rooms, club)
			}
			for _, r := range rooms {
				answers = append(answers, fmt.Sprint(try(c, probe.ev, probe.arg(r), noRoom, notLoggedIn)["message"]))
			}
			for _, a := range answers[1:] {
				if a != answers[0] {
					t.Errorf("%s: %s answers %q for rooms %v: existence shows", c.name, probe.ev, answers, rooms)
					break
				}
			}
		}
		for _, probe := range []string{"edit message", "delete message"} {
			var answers []string
			for _, id := range []any{dm["id"], secretIDs[5], 999_999.0, 1e15} {
				answers = append(answers, fmt.Sprint(try(c, probe, map[string]any{"message": id, "msg": "x"}, noMessage, notLoggedIn)["message"]))
			}
			for _, a := range answers[1:] {
				if a != answers[0] {
					t.Errorf("%s: %s answers %q: existence shows", c.name, probe, answers)
					break
				}
			}
		}
		// The room list: public rooms and one's own direct rooms only.
		ack := try(c, "list rooms", nil)
		for _, it := range asList(ack["rooms"]) {
			if r, _ := it.(map[string]any); r["kind"] == "direct" {
				leaks++
				t.Errorf("%s: list rooms shows %v", c.name, r)
			}
		}
	}
	close(stop)
	<-done

	// Let the last live traffic arrive, then look at everything the
	// intruders were ever sent.
	fence(t, alice, "privacy fence", intruders...)
	for _, c := range intruders {
		for _, ev := range c.snapshot() {
			text := fmt.Sprint(ev.args)
			private := strings.Contains(text, "SECRET")
			switch ev.name {
			case "room message", "message edited", "message deleted", "typing":
				if m, _ := ev.args[0].(map[string]any); m["room"] != float64(1) {
					private = true
				}
			}
			if private {
				leaks++
				t.Errorf("%s received %s %v", c.name, ev.name, ev.args)
			}
		}
	}
	// The members did get their live traffic (the test saw a live room).
	bob.waitEvent("room message", func(args []any) bool {
		m, _ := args[0].(map[string]any)
		return strings.HasPrefix(fmt.Sprint(m["msg"]), "SECRET live")
	})
	t.Logf("privacy: %d attempts by %d intruders, %d leaks", attempts, len(intruders), leaks)
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
