package socketio

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo is the conformance fixture's handler set: auth on connect, message
// echoed as message-back, message-with-ack acknowledged with its arguments.
func echo(s *Socket) {
	auth := s.Auth()
	if auth == nil {
		auth = map[string]any{}
	}
	s.Emit("auth", auth)
	s.On("message", func(args []any, _ func(...any)) { s.Emit("message-back", args...) })
	s.On("message-with-ack", func(args []any, ack func(...any)) {
		if ack != nil {
			ack(args...)
		}
	})
}

func TestConnectV5(t *testing.T) {
	r := newRig(t, Options{OnConnection: echo, Namespaces: []string{"/custom"}})
	c, f := r.open(4)
	c.recv(`0{"token":"123"}`)
	out := f.wait(t, 2)
	sid := sidOf(t, out[0])
	if !strings.HasPrefix(out[0], "0{") || len(sid) != 20 {
		t.Errorf("CONNECT acknowledgement %q", out[0])
	}
	if out[1] != `2["auth",{"token":"123"}]` {
		t.Errorf("auth: %q", out[1])
	}
	c.recv("0/custom,")
	out = f.wait(t, 4)
	if !strings.HasPrefix(out[2], `0/custom,{"sid":"`) || sidOf(t, out[2]) == sid {
		t.Errorf("custom CONNECT acknowledgement %q", out[2])
	}
	if out[3] != `2/custom,["auth",{}]` {
		t.Errorf("custom auth: %q", out[3])
	}
	c.recv("0/random")
	if out = f.wait(t, 5); out[4] != `4/random,{"message":"Invalid namespace"}` {
		t.Errorf("unknown namespace: %q", out[4])
	}
	if f.isClosed() {
		t.Error("an unknown namespace closed the connection")
	}
}

func TestConnectV2(t *testing.T) {
	var auths []map[string]any
	var mu sync.Mutex
	r := newRig(t, Options{Namespaces: []string{"/custom"}, OnConnection: func(s *Socket) {
		mu.Lock()
		auths = append(auths, s.Auth())
		mu.Unlock()
		echo(s)
	}})
	c, f := r.open(3)
	// Connected to "/" without asking, as socket.io v2 did.
	out := f.wait(t, 2)
	if out[0] != "0" || out[1] != `2["auth",{}]` {
		t.Fatalf("v2 open: %q", out)
	}
	c.recv("0/custom?token=abc,")
	out = f.wait(t, 4)
	if out[2] != "0/custom," || out[3] != `2/custom,["auth",{"token":"abc"}]` {
		t.Errorf("v2 custom connect: %q", out[2:])
	}
	c.recv(`0/nope,`)
	if out = f.wait(t, 5); out[4] != `4/nope,"Invalid namespace"` {
		t.Errorf("v2 unknown namespace: %q", out[4])
	}
	c.recv(`21["message-with-ack",1]`)
	if out = f.wait(t, 6); out[5] != `31[1]` {
		t.Errorf("v2 ack: %q", out[5])
	}
	mu.Lock()
	defer mu.Unlock()
	if auths[0] != nil || !reflect.DeepEqual(auths[1], map[string]any{"token": "abc"}) {
		t.Errorf("auths %v", auths)
	}
}

func TestMessagesAndAcks(t *testing.T) {
	r := newRig(t, Options{OnConnection: echo})
	c, f := r.open(4)
	c.recv("0")
	f.wait(t, 2)
	c.recv(`2["message",1,"2",{"3":[true]}]`)
	c.recv(`2456["message-with-ack",1,"2",{"3":[false]}]`)
	c.recv(`52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
	c.recvBin([]byte{1, 2, 3})
	c.recvBin([]byte{4, 5, 6})
	c.recv(`52-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
	c.recvBin([]byte{1, 2, 3})
	c.recvBin([]byte{4, 5, 6})
	want := []string{
		`2["message-back",1,"2",{"3":[true]}]`,
		`3456[1,"2",{"3":[false]}]`,
		`52-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`, "bin:\x01\x02\x03", "bin:\x04\x05\x06",
		`62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`, "bin:\x01\x02\x03", "bin:\x04\x05\x06",
	}
	if out := f.wait(t, 2+len(want))[2:]; !reflect.DeepEqual(out, want) {
		t.Errorf("got\n%q\nwant\n%q", out, want)
	}
	// A client's ACK (this server asks for none) is read and ignored,
	// binary ones too.
	c.recv(`399[1]`)
	c.recv(`61-3[{"_placeholder":true,"num":0}]`)
	c.recvBin([]byte("x"))
	c.recv(`2["message","still here"]`)
	if out := f.wait(t, 11); out[10] != `2["message-back","still here"]` || f.isClosed() {
		t.Errorf("after acks: %q closed=%v", out[10:], f.isClosed())
	}
}

// TestHandlerOrder: one socket's handlers run one at a time, in arrival
// order, even when they block.
func TestHandlerOrder(t *testing.T) {
	const n = 300
	var got []float64
	var running atomic.Int32
	done := make(chan struct{})
	r := newRig(t, Options{OnConnection: func(s *Socket) {
		s.On("n", func(args []any, _ func(...any)) {
			if running.Add(1) != 1 {
				t.Error("two handlers of one socket at once")
			}
			if len(got)%7 == 0 {
				time.Sleep(time.Millisecond)
			}
			got = append(got, args[0].(float64))
			running.Add(-1)
			if len(got) == n {
				close(done)
			}
		})
		s.Enqueue(func() { time.Sleep(20 * time.Millisecond) })
	}})
	c, _ := r.open(4)
	c.recv("0")
	for i := 0; i < n; i++ {
		c.recv(fmt.Sprintf(`2["n",%d]`, i))
	}
	<-done
	for i, v := range got {
		if v != float64(i) {
			t.Fatalf("event %d handled as %v-th", i, v)
		}
	}
}

func TestAckOnce(t *testing.T) {
	r := newRig(t, Options{OnConnection: func(s *Socket) {
		s.On("twice", func(args []any, ack func(...any)) {
			var wg sync.WaitGroup
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() { defer wg.Done(); ack("ok") }()
			}
			wg.Wait()
			ack("again")
			s.Emit("after")
		})
		s.On("noack", func(args []any, ack func(...any)) {
			if ack != nil {
				t.Error("ack without an id")
			}
		})
	}})
	c, f := r.open(4)
	c.recv("0")
	c.recv(`2["noack"]`)
	c.recv(`27["twice"]`)
	out := f.wait(t, 3)
	time.Sleep(20 * time.Millisecond)
	if out[1] != `37["ok"]` || out[2] != `2["after"]` || len(f.messages()) != 3 {
		t.Errorf("got %q", f.messages())
	}
}

// TestHandleSharedEvents: a table set with Handle answers its events with
// each socket's own context; a handler set with On for the same event wins.
func TestHandleSharedEvents(t *testing.T) {
	ev := Events{
		"who":  func(ctx any, args []any, ack func(...any)) { ack(ctx) },
		"both": func(ctx any, args []any, ack func(...any)) { ack("table") },
	}
	n := 0
	r := newRig(t, Options{OnConnection: func(s *Socket) {
		n++
		s.Handle(ev, fmt.Sprint("socket ", n))
		s.On("both", func(args []any, ack func(...any)) { ack("own") })
	}})
	c, f := r.open(4)
	c.recv("0")
	c.recv(`21["who"]`)
	c.recv(`22["both"]`)
	c.recv(`23["unknown"]`)
	out := f.wait(t, 3)
	time.Sleep(20 * time.Millisecond)
	if out[1] != `31["socket 1"]` || out[2] != `32["own"]` || len(f.messages()) != 3 {
		t.Errorf("got %q", f.messages())
	}
}

// TestConnectThenEmitAtOnce is the race server/connectgate.go worked
// around: an event sent right behind the CONNECT must reach a handler set
// in OnConnection, every time.
func TestConnectThenEmitAtOnce(t *testing.T) {
	var handled atomic.Int64
	r := newRig(t, Options{OnConnection: func(s *Socket) {
		s.On("first", func(args []any, ack func(...any)) {
			handled.Add(1)
			ack("ok")
		})
	}})
	const n = 1000
	for i := 0; i < n; i++ {
		c, f := r.open(4)
		c.recv("0")
		c.recv(`21["first"]`)
		out := f.wait(t, 2)
		if !strings.HasPrefix(out[0], `0{"sid":`) || out[1] != `31["ok"]` {
			t.Fatalf("run %d: %q", i, out)
		}
		c.OnClose(nil, "transport close")
	}
	if handled.Load() != n {
		t.Fatalf("%d of %d events handled", handled.Load(), n)
	}
}

// TestEmitBeforeAck: what OnConnection emits, and what others send the
// socket meanwhile, follows the CONNECT acknowledgement.
func TestEmitBeforeAck(t *testing.T) {
	entered := make(chan *Socket)
	release := make(chan struct{})
	r := newRig(t, Options{OnConnection: func(s *Socket) {
		s.Emit("one")
		entered <- s
		<-release
		s.Emit("three")
	}})
	c, f := r.open(4)
	c.recv("0")
	s := <-entered
	if !s.Connected() {
		t.Error("not Connected during OnConnection")
	}
	if err := r.srv.Emit("two"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if m := f.messages(); len(m) != 0 {
		t.Fatalf("sent before the acknowledgement: %q", m)
	}
	close(release)
	out := f.wait(t, 4)
	if !strings.HasPrefix(out[0], "0{") || out[1] != `2["one"]` || out[2] != `2["two"]` || out[3] != `2["three"]` {
		t.Errorf("got %q", out)
	}
}

func TestDisconnectReasons(t *testing.T) {
	reasons := make(chan string, 10)
	r := newRig(t, Options{Namespaces: []string{"/custom"}, OnConnection: func(s *Socket) {
		s.OnDisconnect(func(reason string) { reasons <- s.Namespace() + " " + reason })
	}})
	next := func() string {
		select {
		case r := <-reasons:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no OnDisconnect")
			return ""
		}
	}

	// A client's DISCONNECT: the socket goes; with its last socket the
	// connection goes too.
	c, f := r.open(4)
	c.recv("0")
	c.recv("0/custom,")
	f.wait(t, 2)
	c.recv("1/custom,")
	if got := next(); got != "/custom client namespace disconnect" {
		t.Errorf("got %q", got)
	}
	if f.isClosed() {
		t.Error("closed with a socket left")
	}
	c.recv("1")
	if got := next(); got != "/ client namespace disconnect" {
		t.Errorf("got %q", got)
	}
	if reason := f.waitClosed(t); reason != "forced close" {
		t.Errorf("engine closed with %q", reason)
	}

	// The transport's end.
	for _, reason := range []string{"transport close", "ping timeout"} {
		c, f = r.open(4)
		c.recv("0")
		f.wait(t, 1)
		c.OnClose(nil, reason)
		if got := next(); got != "/ "+reason {
			t.Errorf("got %q, want %q", got, reason)
		}
	}

	// The server's Disconnect.
	var sock *Socket
	r2 := newRig(t, Options{OnConnection: func(s *Socket) {
		sock = s
		s.OnDisconnect(func(reason string) { reasons <- reason })
	}})
	c, f = r2.open(4)
	c.recv("0")
	f.wait(t, 1)
	sock.Disconnect()
	if got := next(); got != "server namespace disconnect" {
		t.Errorf("got %q", got)
	}
	if out := f.wait(t, 2); out[1] != "1" || f.waitClosed(t) != "forced close" || sock.Connected() {
		t.Errorf("got %q", out)
	}

	// Disconnect inside OnConnection: acknowledged, then disconnected.
	r3 := newRig(t, Options{OnConnection: func(s *Socket) {
		s.OnDisconnect(func(reason string) { reasons <- reason })
		s.Emit("hello")
		s.Disconnect()
		s.Emit("dropped")
	}})
	c, f = r3.open(4)
	c.recv("0")
	if got := next(); got != "server namespace disconnect" {
		t.Errorf("got %q", got)
	}
	out := f.wait(t, 3)
	if !strings.HasPrefix(out[0], "0{") || out[1] != `2["hello"]` || out[2] != "1" || f.waitClosed(t) != "forced close" {
		t.Errorf("got %q", out)
	}
}

func TestKeepEmptyConnections(t *testing.T) {
	r := newRig(t, Options{KeepEmptyConnections: true, OnConnection: echo})
	c, f := r.open(4)
	c.recv("0")
	f.wait(t, 2)
	c.recv("1")
	time.Sleep(20 * time.Millisecond)
	if f.isClosed() {
		t.Fatal("closed")
	}
	c.recv("0")
	if out := f.wait(t, 4); !strings.HasPrefix(out[2], "0{") {
		t.Errorf("reconnect: %q", out)
	}
}

func TestConnectTimeout(t *testing.T) {
	r := newRig(t, Options{ConnectTimeout: 50 * time.Millisecond, Namespaces: []string{"/custom"}})
	_, f := r.open(4)
	start := time.Now()
	if reason := f.waitClosed(t); reason != "forced close" || time.Since(start) < 40*time.Millisecond {
		t.Errorf("closed with %q after %v", reason, time.Since(start))
	}
	c, f := r.open(4)
	c.recv("0/custom,")
	time.Sleep(150 * time.Millisecond)
	if f.isClosed() {
		t.Error("a connection that joined a namespace timed out")
	}
	c, f = r.open(3) // v2: joined "/" at once
	time.Sleep(150 * time.Millisecond)
	if f.isClosed() {
		t.Error("a v2 connection timed out")
	}
}

// TestBadInput: each closes the connection with "parse error", reports an
// ErrProtocol, and disconnects the sockets with that reason.
func TestBadInput(t *testing.T) {
	type step struct {
		text string
		bin  []byte
	}
	txt := func(s string) step { return step{text: s} }
	cases := map[string][]step{
		"unknown type":               {txt("4abc")},
		"unknown type 7":             {txt(`7["x"]`)},
		"event payload not array":    {txt("2{}")},
		"bad ack id":                 {txt(`2abc["message-with-ack",1]`)},
		"bad JSON":                   {txt(`2["x"`)},
		"trailing garbage":           {txt(`2["x"]xyz`)},
		"no event name":              {txt(`2[]`)},
		"numeric event name":         {txt(`27[42,"x"]`)},
		"reserved event":             {txt(`2["disconnect"]`)},
		"too many attachments":       {txt(`511-["x"]`)},
		"attachment count missing":   {txt(`5-["x"]`)},
		"text during attachments":    {txt(`52-["x",{"_placeholder":true,"num":0}]`), {bin: []byte("a")}, txt(`2["x"]`)},
		"binary without packet":      {{bin: []byte("a")}},
		"placeholder out of range":   {txt(`51-["x",{"_placeholder":true,"num":5}]`), {bin: []byte("a")}},
		"placeholder without binary": {txt(`50-["x",{"_placeholder":true,"num":0}]`)},
		"second CONNECT":             {txt("0")},
		"CONNECT array auth":         {txt("0/custom,[1]")},
		"namespace not joined":       {txt(`2/custom,["x"]`)},
		"DISCONNECT not joined":      {txt(`1/custom,`)},
		"CONNECT_ERROR from client":  {txt(`4{"message":"x"}`)},
		"ack object payload":         {txt(`31{"a":1}`)},
		"long namespace":             {txt("0/" + strings.Repeat("n", 10_000) + ",")},
		"empty":                      {txt("")},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			reasons := make(chan string, 1)
			r := newRig(t, Options{Namespaces: []string{"/custom"}, OnConnection: func(s *Socket) {
				s.OnDisconnect(func(reason string) { reasons <- reason })
			}})
			c, f := r.open(4)
			c.recv("0")
			f.wait(t, 1)
			for _, s := range steps {
				if s.bin != nil {
					c.recvBin(s.bin)
				} else {
					c.recv(s.text)
				}
			}
			if reason := f.waitClosed(t); reason != "parse error" {
				t.Errorf("closed with %q", reason)
			}
			if err := r.lastErr(t); !errors.Is(err, ErrProtocol) {
				t.Errorf("reported %v", err)
			} else {
				t.Log(err)
			}
			if got := <-reasons; got != "parse error" {
				t.Errorf("OnDisconnect(%q)", got)
			}
			// Nothing more is read.
			c.recv(`2["x"]`)
		})
	}
	// Before any CONNECT.
	for _, in := range []string{`2["login",{"username":"a","password":"b"}]`, `0{"token":`, "0[1,2]", "1"} {
		r := newRig(t, Options{})
		c, f := r.open(4)
		c.recv(in)
		if f.waitClosed(t) != "parse error" {
			t.Errorf("%q: not a parse error", in)
		}
		if err := r.lastErr(t); strings.Contains(err.Error(), "password") {
			t.Errorf("the report shows the packet: %v", err)
		}
	}
}

func TestTooManyQueued(t *testing.T) {
	release := make(chan struct{})
	r := newRig(t, Options{MaxQueuedEvents: 5, OnConnection: func(s *Socket) {
		s.On("slow", func([]any, func(...any)) { <-release })
	}})
	defer close(release)
	c, f := r.open(4)
	c.recv("0")
	f.wait(t, 1)
	for i := 0; i < 10 && !f.isClosed(); i++ {
		c.recv(`2["slow"]`)
	}
	if f.waitClosed(t) != "parse error" {
		t.Error("not closed")
	}
	if err := r.lastErr(t); !errors.Is(err, errTooManyQueued) {
		t.Errorf("reported %v", err)
	}
}

func TestPrepared(t *testing.T) {
	r := newRig(t, Options{Namespaces: []string{"/custom"}})
	var fs []*fakeSession
	for i := 0; i < 3; i++ {
		c, f := r.open(4)
		c.recv("0")
		f.wait(t, 1)
		fs = append(fs, f)
	}
	c, other := r.open(4)
	c.recv("0/custom,")
	other.wait(t, 1)
	p, err := PrepareEvents([]any{"new message", map[string]any{"msg": "hi", "id": 1}}, []any{"get users", []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Emit("tick", 1); err != nil {
		t.Fatal(err)
	}
	for _, s := range r.srv.snapshot() {
		s.EmitPrepared(p)
	}
	for _, f := range fs {
		out := f.wait(t, 4)
		if out[1] != `2["tick",1]` || out[2] != `2["new message",{"id":1,"msg":"hi"}]` || out[3] != `2["get users",["a"]]` {
			t.Errorf("got %q", out)
		}
	}
	time.Sleep(10 * time.Millisecond)
	if m := other.messages(); len(m) != 1 {
		t.Errorf("a /custom socket got %q", m)
	}
	if _, err := PrepareEvent("b", []byte("x")); err == nil {
		t.Error("binary prepared")
	}
	if _, err := PrepareEvents([]any{1}); err == nil {
		t.Error("numeric event name prepared")
	}
}

// TestCloseWaits: Server.Close returns after every OnDisconnect.
func TestCloseWaits(t *testing.T) {
	var n atomic.Int32
	srv := NewServer(Options{OnConnection: func(s *Socket) {
		s.OnDisconnect(func(string) { time.Sleep(5 * time.Millisecond); n.Add(1) })
	}})
	for i := 0; i < 20; i++ {
		c := newConn(srv, newFake(4))
		c.recv("0")
	}
	srv.Close()
	if n.Load() != 20 {
		t.Errorf("%d of 20 OnDisconnect ran before Close returned", n.Load())
	}
}

// TestHandlerPanic: a panicking handler ends its connection, reported,
// and the server goes on.
func TestHandlerPanic(t *testing.T) {
	reasons := make(chan string, 1)
	r := newRig(t, Options{OnConnection: func(s *Socket) {
		s.On("boom", func([]any, func(...any)) { panic("boom") })
		s.On("ok", func(_ []any, ack func(...any)) { ack("fine") })
		s.OnDisconnect(func(reason string) { reasons <- reason })
	}})
	c, f := r.open(4)
	c.recv("0")
	c.recv(`2["boom"]`)
	if reason := f.waitClosed(t); reason != "forced close" {
		t.Errorf("closed with %q", reason)
	}
	if err := r.lastErr(t); !strings.Contains(err.Error(), "panic") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("reported %v", err)
	}
	if got := <-reasons; got != "forced close" {
		t.Errorf("OnDisconnect(%q)", got)
	}
	c, f = r.open(4)
	c.recv("0")
	c.recv(`21["ok"]`)
	if out := f.wait(t, 2); out[1] != `31["fine"]` {
		t.Errorf("after a panic: %q", out)
	}
}
