package hostile

// The conversation events (docs/protocol.md: rooms, direct messages, room
// history, edits and deletes, typing, search, read markers) under attack,
// with the harness of TestHostileClients: the server as its own process,
// a well-behaved client chatting throughout, idle observers, and after
// each attack the same recovery checks (goroutines, live heap, the same
// PID, nothing secret or crash-like in the log).
//
// What the issue asks of these events: unknown rooms, overlong names,
// edits of others' messages, floods of typing events, search strings of
// any shape get a clear {success: false, message}, counted and logged
// sampled; nothing crashes, nothing leaks across rooms.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
)

// The conversation events' texts (server/convwire.go, docs/protocol.md).
const (
	msgNoRoom           = "No such room, or you are not a member of it"
	msgNoMessage        = "No such message of yours"
	msgBadRoom          = "Expected {room: room id}"
	msgBadCreate        = "Expected {name: room name}"
	msgBadRoomSend      = "Expected {room: room id, msg: text, id?: resend key}"
	msgBadDirect        = "Expected {to: username, msg: text, id?: resend key}"
	msgNoUser           = "No such user"
	msgSelfDirect       = "You cannot send a direct message to yourself"
	msgBadRoomPage      = "Expected {room: room id, before?: message id, limit?: 1 to 100}"
	msgBadEdit          = "Expected {message: message id, msg: text, id?: resend key}"
	msgBadDelete        = "Expected {message: message id, id?: resend key}"
	msgBadSearch        = "Expected {q: text, before?: message id, limit?: 1 to 100}"
	msgSearchTooLong    = "Search text must be at most 1000 bytes"
	msgBadMark          = "Expected {room: room id, message: message id}"
	msgTooFastRooms     = "You are doing that too fast; please wait a moment"
	msgTooFastPages     = "You are loading history too fast; please wait a moment"
	msgTooFastTyping    = "Typing notices are limited to one every 2 seconds per room"
	msgTooFastTypingAll = "You are sending typing notices too fast"
	msgNUL              = "Message must not contain the NUL character"
	msgNameEmpty        = "Room name is empty"
	msgNameTooLong      = "Room name is longer than 64 characters"
	msgNameControl      = "Room name contains a control character"
)

// The conversation limits' defaults (README's configuration table).
const (
	roomOpBurst  = 30
	roomOpRate   = 5 // per second, per user
	pageBurst    = 10
	pageRate     = 2 // per second, per socket
	typingEvery  = 2 * time.Second
	typingBurst  = 6
	typingRate   = 2 // per second, per user across rooms
	maxMessageID = 1<<31 - 1
)

// conversationEvents are every conversation event, as chat_refused_total
// labels them.
var conversationEvents = []string{"list rooms", "create room", "join room", "leave room", "send room message",
	"send direct message", "room history", "edit message", "delete message", "typing", "search", "mark read"}

func TestHostileConversations(t *testing.T) {
	if testing.Short() {
		t.Skip("the hostile-client suite runs for minutes; skipped with -short")
	}
	h := startHarness(t, 5)
	h.runAttacks([]attack{
		{name: "C1 malformed payloads", fn: h.convPayloads},
		{name: "C2 others' rooms, messages", fn: h.convForeign},
		{name: "C3 conversation floods", fn: h.convFloods},
		{name: "C4 typing flood", fn: h.typingFlood},
	}, "C")
}

// ---------------------------------------------------------------------------
// Clients.

// convClient is a Socket.IO client of the conversation attacks, logged in
// or anonymous, that records the room events it receives.
type convClient struct {
	h     *harness
	name  string // "" for an anonymous client
	token string
	conn  *sioclient.Conn
	pages int // history pages asked on this socket (see page)

	mu      sync.Mutex
	seen    []roomEvent
	session chan struct{}
}

// roomEvent is one event of a room as a client received it.
type roomEvent struct {
	name, user, msg string
	room, id        int64
}

func (c *convClient) onEvent(name string, args []any) {
	if name == "session" {
		select {
		case c.session <- struct{}{}:
		default:
		}
		return
	}
	switch name {
	case "room message", "typing", "message edited", "message deleted":
	default:
		return
	}
	m, _ := firstArg(args).(map[string]any)
	room, _ := m["room"].(float64)
	id, _ := m["id"].(float64)
	user, _ := m["user"].(string)
	msg, _ := m["msg"].(string)
	c.mu.Lock()
	c.seen = append(c.seen, roomEvent{name: name, user: user, msg: msg, room: int64(room), id: int64(id)})
	c.mu.Unlock()
}

// count returns how many of the room events received so far match.
func (c *convClient) count(match func(roomEvent) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.seen {
		if match(e) {
			n++
		}
	}
	return n
}

// dial opens c's socket; with a token it resumes that session and waits
// until the server says so.
func (c *convClient) dial() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.session = make(chan struct{}, 1)
	opts := sioclient.Options{OnEvent: c.onEvent}
	if c.token != "" {
		opts.Auth = map[string]any{"token": c.token}
	}
	conn, err := sioclient.Dial(ctx, c.h.srv.base, opts)
	if err != nil {
		return fmt.Errorf("%s: dial: %w", c.label(), err)
	}
	c.conn, c.pages = conn, 0
	if c.token != "" {
		select {
		case <-c.session:
		case <-ctx.Done():
			return fmt.Errorf("%s: no session event after resuming", c.label())
		}
	}
	return nil
}

// convUser registers and logs in name on a fresh socket.
func (h *harness) convUser(t *testing.T, name string) *convClient {
	t.Helper()
	c := &convClient{h: h, name: name}
	if err := c.dial(); err != nil {
		t.Fatal(err)
	}
	pw := h.secret("password of " + name)
	if a := c.call(t, "register", creds(name, pw)); !success(a) {
		t.Fatalf("register %s: %v", name, a)
	}
	a := c.call(t, "login", creds(name, pw))
	c.token, _ = ackField(a, "token").(string)
	if !success(a) || c.token == "" {
		t.Fatalf("login %s: %v", name, a)
	}
	h.addSecret(c.token, "session token of "+name)
	t.Cleanup(func() { c.conn.Close() })
	return c
}

func (h *harness) convAnon(t *testing.T) *convClient {
	t.Helper()
	c := &convClient{h: h}
	if err := c.dial(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	return c
}

func (c *convClient) label() string {
	if c.name == "" {
		return "anonymous"
	}
	return c.name
}

// call sends event and returns its answer. A connection the server
// closed, or an answer that does not come within 10 s, is an error of the
// test: bad input must be answered, never hang up on.
func (c *convClient) call(t *testing.T, event string, args ...any) []any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := c.conn.Call(ctx, event, args...)
	if err != nil {
		t.Errorf("%s: %s(%s): %v", c.label(), event, describe(args), err)
	}
	return a
}

// page counts a call that may spend the socket's page budget (`list
// rooms`, `room history`, `search`: PAGE_BURST 10 per socket), and opens
// a fresh socket (resuming the session) before it runs out: the attacks
// here are about the answers, the floods measure the budget. Safe to call
// from any goroutine of the test; false if the socket could not be
// replaced.
func (c *convClient) page(t *testing.T) bool {
	t.Helper()
	if c.pages++; c.pages < pageBurst-1 {
		return true
	}
	c.conn.Close()
	if err := c.dial(); err != nil {
		t.Error(err)
		return false
	}
	c.pages = 1
	return true
}

// describe shortens arguments for a message: a 100 KB string is named by
// its size, not printed.
func describe(args []any) string {
	b, err := json.Marshal(args)
	if err != nil {
		return fmt.Sprint(args)
	}
	return clip(string(b), 100)
}

// wantAnswer checks an answer: {success: false, message: want} and nothing
// else, or, for want "", {success: true, ...}.
func wantAnswer(t *testing.T, what string, got []any, want string) bool {
	t.Helper()
	m, _ := firstArg(got).(map[string]any)
	switch {
	case len(got) != 1 || m == nil:
		t.Errorf("%s: answer %v, want one object", what, got)
	case want == "" && m["success"] != true:
		t.Errorf("%s: answer %v, want success", what, got)
	case want != "" && (m["success"] != false || m["message"] != want || len(m) != 2):
		t.Errorf("%s: answer %v, want {success: false, message: %q}", what, clip(fmt.Sprint(got), 300), want)
	default:
		return true
	}
	return false
}

// roomID and ackID read ids from answers.
func roomID(t *testing.T, a []any) int64 {
	t.Helper()
	r, _ := ackField(a, "room").(map[string]any)
	id, _ := r["id"].(float64)
	if id <= 0 {
		t.Fatalf("answer %v carries no room", a)
	}
	return int64(id)
}

func ackID(t *testing.T, a []any) int64 {
	t.Helper()
	id, _ := ackField(a, "id").(float64)
	if id <= 0 {
		t.Fatalf("answer %v carries no id", a)
	}
	return int64(id)
}

// tally counts, by event, the refusals chat_refused_total must count:
// every refusal but a rate limit's.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (tl *tally) add(event, answer string) {
	switch answer {
	case "", msgTooFast, msgTooFastRooms, msgTooFastPages, msgTooFastTyping, msgTooFastTypingAll:
		return
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.n == nil {
		tl.n = map[string]int{}
	}
	tl.n[event]++
}

func refusedKey(event string) string { return `chat_refused_total{event="` + event + `"}` }
func limitedKey(limit string) string { return `chat_rate_limited_total{limit="` + limit + `"}` }

func (h *harness) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	m, err := h.srv.metrics()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkRefused checks that chat_refused_total rose, for every conversation
// event, by what tl counted between m0 and now.
func (h *harness) checkRefused(t *testing.T, m0 map[string]float64, tl *tally) (total int) {
	t.Helper()
	m1 := h.scrape(t)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, ev := range conversationEvents {
		if _, ok := m1[refusedKey(ev)]; !ok {
			t.Errorf("/metrics has no %s", refusedKey(ev))
			continue
		}
		if got := int(m1[refusedKey(ev)] - m0[refusedKey(ev)]); got != tl.n[ev] {
			t.Errorf("%s rose by %d, want %d (the refusals answered)", refusedKey(ev), got, tl.n[ev])
		}
		total += tl.n[ev]
	}
	if d := m1[`chat_store_errors_total{op="rooms"}`] - m0[`chat_store_errors_total{op="rooms"}`]; d != 0 {
		t.Errorf("chat_store_errors_total{op=\"rooms\"} rose by %.0f: bad input reached the store as an error", d)
	}
	return total
}

// checkRefusalLog checks the server's log from byte offset from, written
// since start, during which refusals were answered: refusals are logged
// sampled (a burst of 10 lines, then one a second, the next line saying
// how many were left out), and no line repeats what a client sent at
// length. It returns the number of refusal lines.
func (h *harness) checkRefusalLog(t *testing.T, from int, start time.Time, refusals int) int {
	t.Helper()
	logs := h.srv.logs.String()[from:]
	lines, suppressed := 0, false
	for line := range strings.SplitSeq(logs, "\n") {
		if len(line) > 2000 {
			t.Errorf("a log line of %d bytes: %s", len(line), clip(line, 300))
		}
		if strings.Contains(line, `msg="request refused"`) {
			lines++
			suppressed = suppressed || strings.Contains(line, "suppressed_before=")
		}
	}
	allowed := 10 + int(time.Since(start).Seconds()) + 1
	if lines > allowed {
		t.Errorf("%d refusals logged in %d lines in %s: want them sampled, at most %d lines",
			refusals, lines, time.Since(start).Round(time.Millisecond), allowed)
	}
	if refusals > 0 && lines == 0 {
		t.Errorf("%d refusals and no log line says so", refusals)
	}
	if refusals > lines && !suppressed {
		// The next line logged says how many were left out: one more
		// refusal, once the sampler lets a line through again.
		time.Sleep(1100 * time.Millisecond)
		anon := h.convAnon(t)
		wantAnswer(t, "one more refusal", anon.call(t, "typing", map[string]any{"room": 1}), msgSendNotLoggedIn)
		// The line reaches us through the process's output a moment
		// after the answer.
		for deadline := time.Now().Add(3 * time.Second); !strings.Contains(h.srv.logs.String()[from:], "suppressed_before=") && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(h.srv.logs.String()[from:], "suppressed_before=") {
			t.Errorf("%d refusals in %d log lines, and the next line does not say how many were left out (suppressed_before)", refusals, lines)
		}
	}
	return lines
}

// ---------------------------------------------------------------------------
// C1. Malformed payloads of every shape to every conversation event.

// shape is one kind of value a client can send where the server expects
// something else.
type shape struct {
	name string
	v    any
	omit bool // the argument or field is left out
}

func shapes() []shape {
	nested := map[string]any{"a": map[string]any{"b": []any{1, map[string]any{"c": nil}, []any{[]any{true}}}}}
	var deep any = []any{}
	for range 1000 {
		deep = []any{deep}
	}
	return []shape{
		{name: "missing", omit: true}, {name: "zero", v: 0}, {name: "number", v: 42}, {name: "float", v: 1.5},
		{name: "negative", v: -1}, {name: "huge number", v: 1e308}, {name: "2^53+2", v: 9007199254740994.0},
		{name: "null", v: nil}, {name: "true", v: true}, {name: "false", v: false},
		{name: "array", v: []any{"a", "b"}}, {name: "empty array", v: []any{}}, {name: "nested object", v: nested},
		{name: "1,000 levels deep", v: deep}, {name: "empty object", v: map[string]any{}},
		{name: "string", v: "x"}, {name: "empty string", v: ""}, {name: "numeric string", v: "1"},
		{name: "100 KB string", v: strings.Repeat("x", 100_000)}, {name: "NUL", v: "\x00"},
		{name: "unicode", v: "👋 é \u202e"},
	}
}

// convCase is one call and the answer it must get: a refusal's text, or
// "" for success.
type convCase struct {
	event string
	args  []any
	want  string
}

// with returns a copy of base with key set to s (or left out).
func with(base map[string]any, key string, s shape) map[string]any {
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	if s.omit {
		delete(m, key)
	} else {
		m[key] = s.v
	}
	return m
}

// wholeCases puts every shape where the event's payload goes, and junk
// argument lists: all answered bad.
func wholeCases(event, bad string) []convCase {
	var cs []convCase
	for _, s := range shapes() {
		if s.omit {
			cs = append(cs, convCase{event, nil, bad})
			continue
		}
		cs = append(cs, convCase{event, []any{s.v}, bad})
	}
	nested := map[string]any{"room": map[string]any{"room": 1}}
	return append(cs,
		convCase{event, []any{1, nil, "x", []any{}, nested}, bad},
		convCase{event, []any{[]any{map[string]any{"room": 1, "name": "n", "q": "a"}}}, bad},
		convCase{event, []any{nested}, bad})
}

// fieldCases puts every shape in field key of base; answer says what each
// must get, and skip leaves a shape out (a valid value).
func fieldCases(event string, base map[string]any, key string, answer func(s shape) (want string, skip bool)) []convCase {
	var cs []convCase
	for _, s := range shapes() {
		if want, skip := answer(s); !skip {
			cs = append(cs, convCase{event, []any{with(base, key, s)}, want})
		}
	}
	return cs
}

// The answers by kind of field.
func idField(bad string) func(shape) (string, bool) {
	return func(s shape) (string, bool) { return bad, s.name == "number" }
}

func optIDField(bad string) func(shape) (string, bool) {
	return func(s shape) (string, bool) {
		return bad, s.name == "number" || s.name == "missing" || s.name == "null"
	}
}

// textField: a message's text. A valid text is skipped, or answered
// validText when that is set.
func textField(bad, validText string) func(shape) (string, bool) {
	return func(s shape) (string, bool) {
		switch s.name {
		case "empty string":
			return msgEmpty, false
		case "100 KB string":
			return "Message is 100000 characters; the limit is 2000", false
		case "NUL":
			return msgNUL, false
		case "string", "numeric string", "unicode":
			return validText, validText == ""
		}
		return bad, false
	}
}

// keyField: the optional resend key.
func keyField(validKey string) func(shape) (string, bool) {
	return func(s shape) (string, bool) {
		switch s.name {
		case "missing", "null", "string", "numeric string", "unicode":
			return validKey, validKey == ""
		}
		return msgBadClientID, false
	}
}

// payloadCases is every malformed payload of event, for a caller who is
// user, a member of room, and the author of message msg.
func payloadCases(event, user string, room, msg int64) []convCase {
	nobody := "nobody-" + user
	var cs []convCase
	switch event {
	case "list rooms":
		// It takes no payload: whatever comes is ignored.
		cs = wholeCases(event, "")
	case "create room":
		cs = wholeCases(event, msgBadCreate)
		cs = append(cs, fieldCases(event, map[string]any{}, "name", func(s shape) (string, bool) {
			switch s.name {
			case "string", "numeric string":
				return "", true
			case "empty string":
				return msgNameEmpty, false
			case "100 KB string":
				return msgNameTooLong, false
			case "NUL", "unicode": // U+202E, a bidirectional override
				return msgNameControl, false
			}
			return msgBadCreate, false
		})...)
		for name, want := range map[string]string{
			"   ": msgNameEmpty, "\t\n": msgNameEmpty, strings.Repeat("n", 65): msgNameTooLong,
			strings.Repeat("👋", 65): msgNameTooLong, strings.Repeat("e\u0301", 33): msgNameTooLong,
			"a\nb": msgNameControl, "x\u2066y": msgNameControl, "\u200f\u202a": msgNameControl, "bell\a": msgNameControl,
		} {
			cs = append(cs, convCase{event, []any{map[string]any{"name": name}}, want})
		}
	case "join room", "leave room", "typing":
		cs = wholeCases(event, msgBadRoom)
		cs = append(cs, fieldCases(event, map[string]any{}, "room", idField(msgBadRoom))...)
		for _, r := range []float64{999_999, 1 << 53} {
			cs = append(cs, convCase{event, []any{map[string]any{"room": r}}, msgNoRoom})
		}
	case "send room message":
		base := map[string]any{"room": room, "msg": "hi"}
		cs = wholeCases(event, msgBadRoomSend)
		cs = append(cs, fieldCases(event, base, "room", idField(msgBadRoomSend))...)
		cs = append(cs, fieldCases(event, base, "msg", textField(msgBadRoomSend, ""))...)
		cs = append(cs, fieldCases(event, base, "id", keyField(""))...)
		cs = append(cs,
			convCase{event, []any{map[string]any{"room": 999_999, "msg": "hi"}}, msgNoRoom},
			convCase{event, []any{map[string]any{"room": room, "msg": " \n\t "}}, msgEmpty},
			convCase{event, []any{map[string]any{"room": room, "msg": strings.Repeat("é", 2001)}}, "Message is 2001 characters; the limit is 2000"},
			convCase{event, []any{map[string]any{"room": room, "msg": "hi", "id": strings.Repeat("k", 129)}}, msgBadClientID})
	case "send direct message":
		base := map[string]any{"to": nobody, "msg": "hi"}
		cs = wholeCases(event, msgBadDirect)
		cs = append(cs, fieldCases(event, base, "to", func(s shape) (string, bool) {
			switch s.name {
			case "string", "numeric string", "unicode", "NUL":
				return msgNoUser, false
			}
			return msgBadDirect, false // not text, empty, or over 1,024 bytes
		})...)
		cs = append(cs, fieldCases(event, base, "msg", textField(msgBadDirect, msgNoUser))...)
		cs = append(cs, fieldCases(event, base, "id", keyField(msgNoUser))...)
		cs = append(cs,
			convCase{event, []any{map[string]any{"to": user, "msg": "hi"}}, msgSelfDirect},
			convCase{event, []any{map[string]any{"to": strings.Repeat("é", 513), "msg": "hi"}}, msgBadDirect})
	case "room history":
		base := map[string]any{"room": room}
		cs = wholeCases(event, msgBadRoomPage)
		cs = append(cs, fieldCases(event, base, "room", idField(msgBadRoomPage))...)
		cs = append(cs, fieldCases(event, base, "before", optIDField(msgBadRoomPage))...)
		cs = append(cs, fieldCases(event, base, "limit", optIDField(msgBadRoomPage))...)
		for _, l := range []any{0, 101, 2.5, "10", 1e9} {
			cs = append(cs, convCase{event, []any{map[string]any{"room": room, "limit": l}}, msgBadRoomPage})
		}
		cs = append(cs, convCase{event, []any{map[string]any{"room": 999_999}}, msgNoRoom})
	case "edit message", "delete message":
		bad, base := msgBadDelete, map[string]any{"message": msg}
		if event == "edit message" {
			bad, base = msgBadEdit, map[string]any{"message": msg, "msg": "edited"}
			cs = append(cs, fieldCases(event, base, "msg", textField(bad, ""))...)
		}
		cs = append(cs, wholeCases(event, bad)...)
		cs = append(cs, fieldCases(event, base, "message", idField(bad))...)
		cs = append(cs, fieldCases(event, base, "id", keyField(""))...)
		// Ids above every message id there can be: no such message.
		for _, id := range []float64{maxMessageID + 1, 1e15, 1 << 53} {
			cs = append(cs, convCase{event, []any{with(base, "message", shape{v: id})}, msgNoMessage})
		}
		cs = append(cs, convCase{event, []any{with(base, "message", shape{v: maxMessageID})}, msgNoMessage})
	case "search":
		base := map[string]any{"q": "a"}
		cs = wholeCases(event, msgBadSearch)
		cs = append(cs, fieldCases(event, base, "q", func(s shape) (string, bool) {
			if _, isText := s.v.(string); isText {
				return msgSearchTooLong, s.name != "100 KB string" // any other text is a search (searchStrings)
			}
			return msgBadSearch, false
		})...)
		cs = append(cs, fieldCases(event, base, "before", optIDField(msgBadSearch))...)
		cs = append(cs, fieldCases(event, base, "limit", optIDField(msgBadSearch))...)
		cs = append(cs,
			convCase{event, []any{map[string]any{"q": strings.Repeat("a", 1001)}}, msgSearchTooLong},
			convCase{event, []any{map[string]any{"q": strings.Repeat("€", 334)}}, msgSearchTooLong}) // 1,002 bytes
	case "mark read":
		base := map[string]any{"room": room, "message": msg}
		cs = wholeCases(event, msgBadMark)
		cs = append(cs, fieldCases(event, base, "room", idField(msgBadMark))...)
		cs = append(cs, fieldCases(event, base, "message", idField(msgBadMark))...)
		cs = append(cs,
			convCase{event, []any{map[string]any{"room": room, "message": maxMessageID + 1}}, msgBadMark},
			convCase{event, []any{map[string]any{"room": 999_999, "message": msg}}, msgNoRoom})
	}
	return cs
}

// needsLogin: the events a socket that is not logged in is refused.
func needsLogin(event string) bool {
	switch event {
	case "list rooms", "room history", "search":
		return false
	}
	return true
}

// spendsMessages: the events that spend the user's message budget
// (MESSAGE_RATE) before the payload is read, as `send message` does.
func spendsMessages(event string) bool {
	switch event {
	case "send room message", "send direct message", "edit message", "delete message":
		return true
	}
	return false
}

func spendsPages(event string) bool { return !needsLogin(event) }

// searchStrings are texts a search must take as plain words: search
// syntaxes, quotes, SQL, NUL, control and combining characters, every
// script, and the longest there may be.
func searchStrings() []string {
	return []string{
		"", " ", "\t\n", `"`, `""`, `'`, `\`, `\\`, `*`, `hello*`, `AND`, `OR`, `NOT`, `NOT hello`, `-hello`,
		`NEAR(hello world, 2)`, `content:hello`, `{content}: hello`, `^hello`, `(`, `)`, `hello"world`,
		`!@#$%^&*()`, `%`, `_`, `%_%`, `'; DROP TABLE chat_history; --`, `hello & world | !x`, `<->`, `a:*`,
		"\x00", "hello\x00world", "\u202e", "\ufffd", "e\u0301", "\u0301", "👋", "日本語", "مرحبا",
		"\x1b[31mred", strings.Repeat("a", 1000), strings.Repeat("€", 333), strings.Repeat(`" OR `, 200),
		strings.Repeat("hello ", 166),
	}
}

func (h *harness) convPayloads(t *testing.T) (int, string) {
	m0 := h.scrape(t)
	logFrom, start := h.srv.logs.Len(), time.Now()
	tl := &tally{}
	var mu sync.Mutex
	calls := 0

	// One user per event, each with a room and a message of their own,
	// all at once. The events that spend the message budget before
	// reading the payload are paced under it (MESSAGE_BURST 30, then 10
	// a second), so that each call meets the check under test.
	var wg sync.WaitGroup
	for i, event := range conversationEvents {
		user := fmt.Sprintf("pay%02d", i)
		c := h.convUser(t, user)
		anon := h.convAnon(t)
		room := roomID(t, c.call(t, "create room", map[string]any{"name": "room of " + user}))
		msg := ackID(t, c.call(t, "send room message", map[string]any{"room": room, "msg": "mine"}))
		cases := payloadCases(event, user, room, msg)
		if len(cases) < 20 {
			t.Fatalf("%s: only %d cases", event, len(cases))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			spent := 1 // the message above
			for _, k := range cases {
				if spendsMessages(event) {
					if spent++; spent > messageBurst-5 {
						time.Sleep(110 * time.Millisecond)
					}
				}
				if spendsPages(event) && !c.page(t) {
					return
				}
				what := fmt.Sprintf("%s %s(%s)", user, event, describe(k.args))
				wantAnswer(t, what, c.call(t, event, k.args...), k.want)
				tl.add(event, k.want)
				// The same from a socket that is not logged in.
				want := k.want
				if needsLogin(event) {
					want = msgSendNotLoggedIn
				} else if !anon.page(t) {
					return
				}
				wantAnswer(t, "anonymous "+event+"("+describe(k.args)+")", anon.call(t, event, k.args...), want)
				tl.add(event, want)
			}
			mu.Lock()
			calls += 2 * len(cases)
			mu.Unlock()
		}()
	}
	wg.Wait()

	// Search strings of any shape: results or nothing, never a refusal,
	// and only what the caller may read. A word stands in general, in
	// the searcher's room, and in a room the searcher is not in.
	searcher := h.convUser(t, "seeker")
	other := h.convUser(t, "hider")
	anon := h.convAnon(t)
	mine := roomID(t, searcher.call(t, "create room", map[string]any{"name": "seeker's"}))
	hidden := roomID(t, other.call(t, "create room", map[string]any{"name": "hider's"}))
	word := fmt.Sprintf("needle%d", time.Now().UnixNano())
	for _, r := range []int64{1, mine} {
		wantAnswer(t, "seeker writes", searcher.call(t, "send room message", map[string]any{"room": r, "msg": word + " here"}), "")
	}
	wantAnswer(t, "hider writes", other.call(t, "send room message", map[string]any{"room": hidden, "msg": word + " hidden"}), "")
	readable := map[*convClient][]int64{searcher: {1, mine}, anon: {1}}
	for _, c := range []*convClient{searcher, anon} {
		for _, q := range append(searchStrings(), word) {
			c.page(t)
			a := c.call(t, "search", map[string]any{"q": q})
			calls++
			if !wantAnswer(t, fmt.Sprintf("%s search %.40q", c.label(), q), a, "") {
				continue
			}
			found, isList := ackField(a, "messages").([]any)
			if !isList {
				t.Errorf("%s search %.40q: messages %v, want a list", c.label(), q, ackField(a, "messages"))
			}
			for _, f := range found {
				m, _ := f.(map[string]any)
				r, _ := m["room"].(float64)
				if !slices.Contains(readable[c], int64(r)) {
					t.Errorf("%s search %.40q found %v, in room %v it cannot read", c.label(), q, m, r)
				}
			}
			if q == word && len(found) != len(readable[c]) {
				t.Errorf("%s search for %q found %d messages, want %d (general and its own rooms): %v", c.label(), q, len(found), len(readable[c]), found)
			}
		}
	}

	// Every refusal counted by event, no rate limit met (the calls were
	// paced), nothing failed in the store.
	refused := h.checkRefused(t, m0, tl)
	m1 := h.scrape(t)
	for _, l := range []string{"room_ops_per_user", "pages_per_socket", "typing_per_room"} {
		if d := m1[limitedKey(l)] - m0[limitedKey(l)]; d != 0 {
			t.Errorf("%s rose by %.0f: the attack was paced to meet every check but the rate limits", limitedKey(l), d)
		}
	}

	// Without a callback: nothing to answer, nothing may break.
	emitter := h.convUser(t, "emitter")
	for _, event := range conversationEvents {
		for _, s := range shapes() {
			if s.omit {
				emitter.conn.Emit(event)
				anon.conn.Emit(event)
			} else {
				emitter.conn.Emit(event, s.v)
				anon.conn.Emit(event, s.v)
			}
			calls += 2
		}
	}
	// Every socket still answers, and the server is the same process.
	// (Not with a page: the emitted `list rooms` spent the budget.)
	wantAnswer(t, "emitter afterwards", emitter.call(t, "join room", map[string]any{"room": 1}), "")
	wantAnswer(t, "anonymous afterwards", anon.call(t, "typing", map[string]any{"room": 1}), msgSendNotLoggedIn)
	if !h.srv.running() {
		t.Fatalf("the server exited:\n%s", tail(h.srv.logs.String(), 8000))
	}

	lines := h.checkRefusalLog(t, logFrom, start, refused)
	return calls, fmt.Sprintf("%d calls and emits to the 12 events, logged in and not; %d refusals counted by event, in %d log lines",
		calls, refused, lines)
}

// ---------------------------------------------------------------------------
// C2. Others' rooms and messages: edits and deletes refused, rows
// unchanged, room ids enumerated, nothing delivered across rooms.

func (h *harness) convForeign(t *testing.T) (int, string) {
	m0 := h.scrape(t)
	logFrom, start := h.srv.logs.Len(), time.Now()
	tl := &tally{}
	calls := 0

	victor := h.convUser(t, "victor")
	bob := h.convUser(t, "bob")
	eve := h.convUser(t, "eve")
	anon := h.convAnon(t)
	secret := fmt.Sprintf("secret%d", time.Now().UnixNano())

	// Victor's rooms: a public one eve has not joined, and a direct room
	// with bob; messages in them and in general, one of them deleted.
	den := roomID(t, victor.call(t, "create room", map[string]any{"name": "victor's den"}))
	a := victor.call(t, "send direct message", map[string]any{"to": "bob", "msg": secret + " for bob"})
	inDirect := ackID(t, a)
	directID, _ := ackField(a, "room").(float64)
	direct := int64(directID)
	inDen := ackID(t, victor.call(t, "send room message", map[string]any{"room": den, "msg": secret + " in the den"}))
	inGeneral := ackID(t, victor.call(t, "send room message", map[string]any{"room": 1, "msg": "victor in general"}))
	gone := ackID(t, victor.call(t, "send room message", map[string]any{"room": den, "msg": "to be deleted"}))
	wantAnswer(t, "victor deletes his own", victor.call(t, "delete message", map[string]any{"message": gone}), "")
	evesRoom := roomID(t, eve.call(t, "create room", map[string]any{"name": "eve's"}))
	evesMsg := ackID(t, eve.call(t, "send room message", map[string]any{"room": evesRoom, "msg": "eve's own"}))

	// What victor's rooms hold, as victor reads them.
	history := func(room int64) []string {
		t.Helper()
		victor.page(t)
		a := victor.call(t, "room history", map[string]any{"room": room})
		var out []string
		list, _ := ackField(a, "messages").([]any)
		for _, it := range list {
			m, _ := it.(map[string]any)
			out = append(out, fmt.Sprintf("%v %v %v edited=%v deleted=%v", m["id"], m["user"], m["msg"], m["edited"] != nil, m["deleted"]))
		}
		return out
	}
	before := map[int64][]string{direct: history(direct), den: history(den)}

	// try makes eve and an anonymous socket call k: eve must get k.want,
	// the anonymous socket too unless the event needs a login. Paced
	// under the message budget, which send room message, edits and
	// deletes spend first, and the page budget.
	spent := 2
	try := func(k convCase) {
		t.Helper()
		if spendsMessages(k.event) {
			if spent++; spent > messageBurst-5 {
				time.Sleep(110 * time.Millisecond)
			}
		}
		if spendsPages(k.event) {
			eve.page(t)
			anon.page(t)
		}
		wantAnswer(t, fmt.Sprintf("eve %s(%s)", k.event, describe(k.args)), eve.call(t, k.event, k.args...), k.want)
		tl.add(k.event, k.want)
		want := msgSendNotLoggedIn
		if !needsLogin(k.event) {
			want = k.want
		}
		wantAnswer(t, fmt.Sprintf("anonymous %s(%s)", k.event, describe(k.args)), anon.call(t, k.event, k.args...), want)
		tl.add(k.event, want)
		calls += 2
	}

	// Eve edits and deletes every message that is not hers: victor's in
	// each room, a deleted one, and ids that do not exist. One answer for
	// all.
	for _, id := range []int64{inDirect, inDen, inGeneral, gone, evesMsg + 1000, maxMessageID} {
		try(convCase{"edit message", []any{map[string]any{"message": id, "msg": "eve was here"}}, msgNoMessage})
		try(convCase{"edit message", []any{map[string]any{"message": id, "msg": "eve was here", "id": "k" + fmt.Sprint(id)}}, msgNoMessage})
		try(convCase{"delete message", []any{map[string]any{"message": id}}, msgNoMessage})
		try(convCase{"delete message", []any{map[string]any{"message": id, "id": "d" + fmt.Sprint(id)}}, msgNoMessage})
	}

	// Eve and an anonymous socket walk the room ids: victor's direct room
	// and ids that do not exist answer alike, whatever the event; so does
	// victor's public room for what needs membership (joining it would be
	// allowed: it is public, and listed).
	unknown := []int64{evesRoom + 100, evesRoom + 1000, 1 << 40, 1 << 53}
	for _, room := range append([]int64{direct}, unknown...) {
		try(convCase{"join room", []any{map[string]any{"room": room}}, msgNoRoom})
		try(convCase{"leave room", []any{map[string]any{"room": room}}, msgNoRoom})
		try(convCase{"typing", []any{map[string]any{"room": room}}, msgNoRoom})
		try(convCase{"mark read", []any{map[string]any{"room": room, "message": inDirect}}, msgNoRoom})
		try(convCase{"room history", []any{map[string]any{"room": room}}, msgNoRoom})
		try(convCase{"send room message", []any{map[string]any{"room": room, "msg": "eve was here"}}, msgNoRoom})
	}
	try(convCase{"typing", []any{map[string]any{"room": den}}, msgNoRoom})
	try(convCase{"mark read", []any{map[string]any{"room": den, "message": inDen}}, msgNoRoom})
	try(convCase{"room history", []any{map[string]any{"room": den}}, msgNoRoom})
	try(convCase{"send room message", []any{map[string]any{"room": den, "msg": "eve was here"}}, msgNoRoom})

	// Search: victor finds his secret (the check can fail), eve and an
	// anonymous socket find nothing of it.
	for _, c := range []*convClient{victor, eve, anon} {
		c.page(t)
		a := c.call(t, "search", map[string]any{"q": secret})
		found, _ := ackField(a, "messages").([]any)
		want := 0
		if c == victor {
			want = 2
		}
		if !success(a) || len(found) != want {
			t.Errorf("%s searching victor's secret: %v, want %d messages", c.label(), clip(fmt.Sprint(a), 300), want)
		}
		calls++
	}
	// list rooms shows eve the public rooms and her own, never a direct
	// room of others.
	eve.page(t)
	a = eve.call(t, "list rooms")
	list, _ := ackField(a, "rooms").([]any)
	for _, it := range list {
		r, _ := it.(map[string]any)
		if r["kind"] == "direct" || r["peer"] != nil || int64(r["id"].(float64)) == direct {
			t.Errorf("eve's room list holds %v", r)
		}
		if int64(r["id"].(float64)) == den && r["member"] != false {
			t.Errorf("eve's room list says she is in victor's den: %v", r)
		}
	}
	calls++

	// Victor and bob talk, type and edit in their rooms while eve and the
	// anonymous socket listen: nothing reaches them. Bob, who is in the
	// direct room, hears it all (the check can fail).
	bobBefore := bob.count(func(e roomEvent) bool { return e.room == direct })
	victor.call(t, "send direct message", map[string]any{"to": "bob", "msg": secret + " again"})
	victor.call(t, "typing", map[string]any{"room": direct})
	victor.call(t, "typing", map[string]any{"room": den})
	victor.call(t, "edit message", map[string]any{"message": inDirect, "msg": secret + " for bob, edited"})
	victor.call(t, "send room message", map[string]any{"room": den, "msg": secret + " in the den again"})
	calls += 5
	deadline := time.Now().Add(5 * time.Second)
	for bob.count(func(e roomEvent) bool { return e.room == direct })-bobBefore < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := bob.count(func(e roomEvent) bool { return e.room == direct }) - bobBefore; got != 3 {
		t.Errorf("bob received %d events of his direct room, want 3 (a message, a typing notice, an edit)", got)
	}
	time.Sleep(300 * time.Millisecond)
	for _, c := range []*convClient{eve, anon} {
		// General's are everyone's; eve's room is hers.
		if n := c.count(func(e roomEvent) bool { return e.room != evesRoom && e.room != 1 || strings.Contains(e.msg, secret) }); n != 0 {
			c.mu.Lock()
			t.Errorf("%s received %d events of rooms it is not in: %v", c.label(), n, c.seen)
			c.mu.Unlock()
		}
	}

	// Victor's rows are as he left them: eve changed nothing. (His own
	// edit above is the only change in the direct room.)
	after := map[int64][]string{den: history(den)}
	if got, want := after[den], before[den]; len(got) != len(want)+1 || !slices.Equal(got[:len(want)], want) {
		t.Errorf("victor's den after eve's attempts:\n%s\nwant what it held before, and his new message:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	direct0, direct1 := before[direct], history(direct)
	if len(direct0) != 1 || len(direct1) != 2 || !strings.Contains(direct1[0], "edited=true") || strings.Contains(direct1[0], "eve") ||
		!strings.Contains(direct1[0], secret+" for bob, edited") {
		t.Errorf("victor's direct room: before %q, after %q; want his message, edited by him only, and his second", direct0, direct1)
	}
	anon.page(t)
	a = anon.call(t, "room history", map[string]any{"room": 1, "before": inGeneral + 1, "limit": 1})
	list, _ = ackField(a, "messages").([]any)
	if m, _ := firstArg(list).(map[string]any); len(list) != 1 || m["id"] != float64(inGeneral) ||
		m["msg"] != "victor in general" || m["edited"] != nil || m["deleted"] != nil {
		t.Errorf("victor's message %d in general is now %v", inGeneral, list)
	}
	refused := h.checkRefused(t, m0, tl)
	lines := h.checkRefusalLog(t, logFrom, start, refused)
	return calls, fmt.Sprintf("%d calls on others' rooms and messages; %d refusals counted by event, in %d log lines", calls, refused, lines)
}

// ---------------------------------------------------------------------------
// C3. Floods of each conversation event.

// rawCall calls event on rc and decodes the answer.
func rawCall(t *testing.T, rc *rawConn, id uint64, event string, args ...any) []any {
	t.Helper()
	s, err := rc.call(id, 10*time.Second, event, args...)
	if err != nil {
		t.Fatalf("%s: %v", event, err)
	}
	var a []any
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		t.Fatalf("%s: answer %q: %v", event, s, err)
	}
	return a
}

// floodRaw writes frames, in rounds of at most 250 (the server queues
// 1,000 events of a socket before it cuts the client off), each as soon as
// the last is answered, until all are and at least minTime has passed. It
// returns the answers by message ("success" for successes) and the time
// from the first write to the last answer.
func floodRaw(t *testing.T, rc *rawConn, frames func(i int) string, n int, minTime time.Duration) (map[string]int, int, time.Duration) {
	t.Helper()
	const round = 250
	before := rc.ackCounts()
	answered := func() (map[string]int, int) {
		got, total := map[string]int{}, 0
		for k, v := range rc.ackCounts() {
			if d := v - before[k]; d > 0 {
				got[k] = d
				total += d
			}
		}
		return got, total
	}
	start := time.Now()
	sent := 0
	for sent < n || time.Since(start) < minTime {
		batch := make([]string, 0, round)
		for range round {
			batch = append(batch, frames(sent))
			sent++
			if sent >= n && time.Since(start) >= minTime {
				break
			}
		}
		if err := rc.sendAll(batch); err != nil {
			t.Fatalf("flood: writing: %v", err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
			if _, total := answered(); total >= sent {
				break
			}
			if time.Now().After(deadline) {
				got, total := answered()
				t.Fatalf("flood: %d of %d events answered within 30 s: %v", total, sent, got)
			}
		}
	}
	got, _ := answered()
	return got, sent, time.Since(start)
}

type floodSpec struct {
	event   string
	limit   string // the chat_rate_limited_total label of its budget
	tooFast string
	burst   int
	rate    float64
	setup   func(t *testing.T, rc *rawConn, name string) (frame func(i int) string, spent int)
}

func (h *harness) convFloods(t *testing.T) (int, string) {
	const n = 300
	host := h.convUser(t, "host")
	listener := h.convUser(t, "lena")
	outsider := h.convUser(t, "nemo")
	target := roomID(t, host.call(t, "create room", map[string]any{"name": "flood target"}))
	var floodRoom int64 // the room the `send room message` flooder writes in

	ownRoom := func(t *testing.T, rc *rawConn, name string) int64 {
		return roomID(t, rawCall(t, rc, 3, "create room", map[string]any{"name": "room of " + name}))
	}
	ownMessage := func(t *testing.T, rc *rawConn, name string) int64 {
		room := ownRoom(t, rc, name)
		return ackID(t, rawCall(t, rc, 4, "send room message", map[string]any{"room": room, "msg": "mine"}))
	}
	frame := func(event string, payload func(i int) string) func(i int) string {
		return func(i int) string { return fmt.Sprintf(`42%d["%s",%s]`, 100+i, event, payload(i)) }
	}
	specs := []floodSpec{
		{"create room", "room_ops_per_user", msgTooFastRooms, roomOpBurst, roomOpRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			return frame("create room", func(i int) string { return fmt.Sprintf(`{"name":"%s %d"}`, name, i) }), 0
		}},
		{"join room", "room_ops_per_user", msgTooFastRooms, roomOpBurst, roomOpRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			return frame("join room", func(int) string { return fmt.Sprintf(`{"room":%d}`, target) }), 0
		}},
		{"leave room", "room_ops_per_user", msgTooFastRooms, roomOpBurst, roomOpRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			return frame("leave room", func(int) string { return fmt.Sprintf(`{"room":%d}`, target) }), 0
		}},
		{"mark read", "room_ops_per_user", msgTooFastRooms, roomOpBurst, roomOpRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			room := ownRoom(t, rc, name)
			return frame("mark read", func(i int) string { return fmt.Sprintf(`{"room":%d,"message":%d}`, room, 1+i) }), 1
		}},
		{"send room message", "messages_per_user", msgTooFast, messageBurst, messageRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			floodRoom = ownRoom(t, rc, name)
			if a := listener.call(t, "join room", map[string]any{"room": floodRoom}); !success(a) {
				t.Fatalf("lena joins: %v", a)
			}
			return frame("send room message", func(i int) string { return fmt.Sprintf(`{"room":%d,"msg":"flood %d"}`, floodRoom, i) }), 0
		}},
		{"send direct message", "messages_per_user", msgTooFast, messageBurst, messageRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			return frame("send direct message", func(i int) string { return fmt.Sprintf(`{"to":"host","msg":"flood %d"}`, i) }), 0
		}},
		{"edit message", "messages_per_user", msgTooFast, messageBurst, messageRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			m := ownMessage(t, rc, name)
			return frame("edit message", func(i int) string { return fmt.Sprintf(`{"message":%d,"msg":"edit %d"}`, m, i) }), 1
		}},
		{"delete message", "messages_per_user", msgTooFast, messageBurst, messageRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			m := ownMessage(t, rc, name)
			return frame("delete message", func(int) string { return fmt.Sprintf(`{"message":%d}`, m) }), 1
		}},
		{"room history", "pages_per_socket", msgTooFastPages, pageBurst, pageRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			return frame("room history", func(int) string { return `{"room":1,"limit":100}` }), 0
		}},
		{"list rooms", "pages_per_socket", msgTooFastPages, pageBurst, pageRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			return func(i int) string { return fmt.Sprintf(`42%d["list rooms"]`, 100+i) }, 0
		}},
		{"search", "pages_per_socket", msgTooFastPages, pageBurst, pageRate, func(t *testing.T, rc *rawConn, name string) (func(int) string, int) {
			return frame("search", func(i int) string { return fmt.Sprintf(`{"q":"flood says %d"}`, i) }), 0
		}},
	}
	events := 0
	var notes []string
	for i, sp := range specs {
		name := fmt.Sprintf("flood%02d", i)
		rc := h.rawUser(t, name)
		frames, spent := sp.setup(t, rc, name)
		hostBefore := host.count(func(e roomEvent) bool { return e.user == name })
		m0 := h.scrape(t)
		acks, sent, took := floodRaw(t, rc, frames, n, 0)
		m1 := h.scrape(t)
		events += sent
		ok, refused := acks["success"], acks[sp.tooFast]
		allowed := sp.burst - spent + int(sp.rate*took.Seconds()) + 1
		notes = append(notes, fmt.Sprintf("%s %d/%d in %s", sp.event, ok, sent, took.Round(time.Millisecond)))
		if ok+refused != sent {
			t.Errorf("%s flood: answers %v; want only successes and %q", sp.event, acks, sp.tooFast)
		}
		if ok > allowed || ok < sp.burst-spent {
			t.Errorf("%s flood: %d of %d passed in %s; the budget (burst %d, %g/s) allows %d",
				sp.event, ok, sent, took.Round(time.Millisecond), sp.burst, sp.rate, allowed)
		}
		if got := int(m1[limitedKey(sp.limit)] - m0[limitedKey(sp.limit)]); got != refused {
			t.Errorf("%s flood: %s rose by %d, want %d", sp.event, limitedKey(sp.limit), got, refused)
		}
		if got := int(m1[refusedKey(sp.event)] - m0[refusedKey(sp.event)]); got != 0 {
			t.Errorf("%s flood: %s rose by %d: a rate limit is not a refusal of input", sp.event, refusedKey(sp.event), got)
		}
		// Each message stored is delivered once, to the room's members only.
		switch sp.event {
		case "send room message":
			isFlood := func(e roomEvent) bool { return e.name == "room message" && e.user == name }
			waitCount(listener, isFlood, ok)
			if got := listener.count(isFlood); got != ok {
				t.Errorf("lena, in the flooded room, received %d of its messages, want the %d stored", got, ok)
			}
			if got := outsider.count(isFlood); got != 0 {
				t.Errorf("nemo, not in the flooded room, received %d of its messages", got)
			}
		case "send direct message":
			isFlood := func(e roomEvent) bool { return e.name == "room message" && e.user == name }
			waitCount(host, isFlood, hostBefore+ok)
			if got := host.count(isFlood) - hostBefore; got != ok {
				t.Errorf("host received %d of the direct messages, want the %d stored", got, ok)
			}
			if got := outsider.count(isFlood); got != 0 {
				t.Errorf("nemo received %d of direct messages between others", got)
			}
		}
	}

	// A flood of malformed events: each refused as input and counted,
	// none spends the budget (a valid join still passes), and the log
	// stays sampled.
	rc := h.rawUser(t, "junk")
	m0 := h.scrape(t)
	logFrom, start := h.srv.logs.Len(), time.Now()
	acks, sent, took := floodRaw(t, rc, func(i int) string { return fmt.Sprintf(`42%d["join room",{"room":"%d"}]`, 100+i, i) }, 2*n, 0)
	events += sent
	if acks[msgBadRoom] != sent {
		t.Errorf("%d malformed joins answered %v, want all %q", sent, acks, msgBadRoom)
	}
	if a := rawCall(t, rc, 5, "join room", map[string]any{"room": target}); !success(a) {
		t.Errorf("a valid join after %d malformed ones: %v; refusals must not spend the room-change budget", sent, a)
	}
	m1 := h.scrape(t)
	if got := int(m1[refusedKey("join room")] - m0[refusedKey("join room")]); got != sent {
		t.Errorf("%s rose by %d, want %d", refusedKey("join room"), got, sent)
	}
	lines := h.checkRefusalLog(t, logFrom, start, sent)
	notes = append(notes, fmt.Sprintf("%d malformed joins refused in %s, logged in %d lines", sent, took.Round(time.Millisecond), lines))
	return events, strings.Join(notes, "; ")
}

// waitCount waits up to 5 s for c to have received want matching events.
func waitCount(c *convClient, match func(roomEvent) bool, want int) {
	for deadline := time.Now().Add(5 * time.Second); c.count(match) < want && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // and for any more than want
}

// ---------------------------------------------------------------------------
// C4. A flood of typing notices.

// typingFlood: a typist throws typing notices as fast as the server
// answers, at one room for 5 s and then at ten rooms in turn for 5 s. The
// server lets one notice per room through every 2 s (3 in 5 s), and at
// most 2 a second (burst 6) across rooms, which is what holds back the
// ten rooms (17 in 5 s, not 30); only those reach the room's members, and
// no one else; the rest are refused and counted. Meanwhile another user's
// requests are answered promptly.
func (h *harness) typingFlood(t *testing.T) (int, string) {
	const floodFor = 5 * time.Second
	rc := h.rawUser(t, "tina")
	var rooms []int64
	for i := range 10 {
		rooms = append(rooms, roomID(t, rawCall(t, rc, uint64(3+i), "create room", map[string]any{"name": fmt.Sprintf("typing %d", i)})))
	}
	mia := h.convUser(t, "mia") // in the first room
	nia := h.convUser(t, "nia") // in the second
	ears := h.convUser(t, "ears")
	otto := h.convUser(t, "otto") // in none of them
	for _, j := range []struct {
		c     *convClient
		rooms []int64
	}{{mia, rooms[:1]}, {nia, rooms[1:2]}, {ears, rooms}} {
		for _, r := range j.rooms {
			if a := j.c.call(t, "join room", map[string]any{"room": r}); !success(a) {
				t.Fatalf("%s joins %d: %v", j.c.name, r, a)
			}
		}
	}
	ottos := roomID(t, otto.call(t, "create room", map[string]any{"name": "otto's"}))
	fromTina := func(room int64) func(roomEvent) bool {
		return func(e roomEvent) bool { return e.name == "typing" && e.user == "tina" && (room == 0 || e.room == room) }
	}

	// A bystander sends a room message every 200 ms throughout and times
	// each answer.
	bella := h.convUser(t, "bella")
	bellas := roomID(t, bella.call(t, "create room", map[string]any{"name": "bella's"}))
	stop := make(chan struct{})
	done := make(chan []time.Duration)
	go func() {
		var lat []time.Duration
		defer func() { done <- lat }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			start := time.Now()
			a := bella.call(t, "send room message", map[string]any{"room": bellas, "msg": fmt.Sprintf("bella %d", i)})
			lat = append(lat, time.Since(start))
			if !success(a) {
				t.Errorf("bella's message %d during the typing flood: %v", i, a)
			}
		}
	}()

	check := func(what string, acks map[string]int, sent int, allowed int, m0, m1 map[string]float64) int {
		ok := acks["success"]
		refused := acks[msgTooFastTyping] + acks[msgTooFastTypingAll]
		if ok+refused != sent {
			t.Errorf("%s: answers %v; want only successes, %q and %q", what, acks, msgTooFastTyping, msgTooFastTypingAll)
		}
		if ok < 1 || ok > allowed {
			t.Errorf("%s: %d of %d notices passed; the limits allow %d", what, ok, sent, allowed)
		}
		if got := int(m1[limitedKey("typing_per_room")] - m0[limitedKey("typing_per_room")]); got != refused {
			t.Errorf("%s: %s rose by %d, want %d", what, limitedKey("typing_per_room"), got, refused)
		}
		return ok
	}

	// One room.
	frame := func(room func(i int) int64) func(i int) string {
		return func(i int) string { return fmt.Sprintf(`42%d["typing",{"room":%d}]`, 1000+i, room(i)) }
	}
	m0 := h.scrape(t)
	acks1, sent1, took1 := floodRaw(t, rc, frame(func(int) int64 { return rooms[0] }), 0, floodFor)
	m1 := h.scrape(t)
	ok1 := check("one room", acks1, sent1, 1+int(took1/typingEvery), m0, m1)
	waitCount(mia, fromTina(rooms[0]), ok1)
	if got := mia.count(fromTina(rooms[0])); got != ok1 {
		t.Errorf("one room: mia, in it, received %d of tina's typing notices, want the %d let through", got, ok1)
	}

	// Ten rooms, in turn.
	miaBefore, earsBefore := mia.count(fromTina(0)), ears.count(fromTina(0))
	m0 = h.scrape(t)
	acks2, sent2, took2 := floodRaw(t, rc, frame(func(i int) int64 { return rooms[i%len(rooms)] }), 0, floodFor)
	m1 = h.scrape(t)
	perRoom := len(rooms) * (1 + int(took2/typingEvery))
	ok2 := check("ten rooms", acks2, sent2, min(perRoom, typingBurst+int(typingRate*took2.Seconds())+1), m0, m1)
	waitCount(ears, fromTina(0), earsBefore+ok2)
	if got := ears.count(fromTina(0)) - earsBefore; got != ok2 {
		t.Errorf("ten rooms: ears, in all of them, received %d of tina's typing notices, want the %d let through", got, ok2)
	}
	if got, want := mia.count(fromTina(0))-miaBefore, ears.count(fromTina(rooms[0]))-ok1; got != want {
		t.Errorf("ten rooms: mia received %d notices, want the %d of her room", got, want)
	}
	if got, all := nia.count(fromTina(rooms[1])), nia.count(fromTina(0)); got != all || got != ears.count(fromTina(rooms[1])) {
		t.Errorf("nia received %d typing notices, %d of them of her room; ears had %d of it", all, got, ears.count(fromTina(rooms[1])))
	}

	// A room tina is not in: refused, and its member hears nothing.
	if a := rawCall(t, rc, 20, "typing", map[string]any{"room": ottos}); !wantAnswer(t, "tina types in otto's room", a, msgNoRoom) {
		t.Logf("answer %v", a)
	}
	time.Sleep(300 * time.Millisecond)
	if got := otto.count(fromTina(0)); got != 0 {
		t.Errorf("otto, in none of tina's rooms, received %d of her typing notices", got)
	}

	close(stop)
	lat := <-done
	slices.Sort(lat)
	var med, worst time.Duration
	if len(lat) > 0 {
		med, worst = lat[len(lat)/2], lat[len(lat)-1]
	}
	// One every 200 ms, plus the answer's time: about 50 in 10 s.
	if len(lat) < 20 || worst > 2*time.Second {
		t.Errorf("bella's messages during %s of typing floods: %d answered, in %s median, %s at worst: the flood held up another user",
			(took1 + took2).Round(time.Millisecond), len(lat), med, worst)
	}
	return sent1 + sent2, fmt.Sprintf("one room: %d of %d notices passed in %s; ten rooms: %d of %d in %s; a bystander's %d messages answered in %s median, %s at worst",
		ok1, sent1, took1.Round(time.Millisecond), ok2, sent2, took2.Round(time.Millisecond), len(lat), med.Round(time.Millisecond), worst.Round(time.Millisecond))
}
