// Package bustest is the contract every bus.Bus implementation must meet.
// Each implementation's tests call Run with a constructor of isolated
// backends (a database, a subject) so that PostgreSQL NOTIFY and NATS are
// held to exactly the same behaviour, and Bench to measure them alike.
//
// Beyond bus.Bus's comments, the suite holds implementations to this:
//   - every bus on a backend, the publisher included, receives every event
//     published after its Subscribe returned, with its fields intact, even
//     one published the moment it returned;
//   - events from one publisher arrive in the order they were published;
//   - the handler is called one call at a time, and Publish does not wait for
//     a slow handler;
//   - Close waits for a running handler call, stops delivery, ends every
//     goroutine of the bus (used or not, even while reconnecting) and may be
//     called twice; Publish and Subscribe after Close return (an error or
//     nil) without panicking, start nothing and deliver nothing to the
//     closed bus;
//   - Publish with a canceled context returns an error;
//   - after the connection is lost and restored, Resync is called and events
//     flow again.
//
// Tests are not parallel: they count the process's goroutines.
package bustest

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chat/bus"
)

// OpenFunc returns a new bus, not yet subscribed, on the backend it was made
// for. The suite closes it. reconnect, when not nil, makes this bus, and no
// other, lose its listening connection so that it reconnects; it is called
// from the test's goroutine after Subscribe and may fail the test. With a nil
// reconnect the reconnect test is skipped.
type OpenFunc func(t testing.TB) (b bus.Bus, reconnect func())

// NewFunc prepares a fresh backend, isolated from every other test and
// process, and returns how to open buses on it. It registers its own
// cleanup with t.Cleanup.
type NewFunc func(t testing.TB) OpenFunc

// waitTime bounds every wait for an event: generous, for -race on two
// shared cores.
const waitTime = 15 * time.Second

// Run runs the whole contract suite against the backends newBackend makes.
func Run(t *testing.T, newBackend NewFunc) {
	tests := []struct {
		name string
		fn   func(*testing.T, OpenFunc)
	}{
		{"PublisherReceivesOwnEvent", testPublisherReceivesOwn},
		{"PublishRightAfterSubscribe", testPublishRightAfterSubscribe},
		{"EveryBusReceivesEveryEvent", testEveryBusReceivesEvery},
		{"FieldsIntact", testFieldsIntact},
		{"PublishWithoutSubscribe", testPublishWithoutSubscribe},
		{"OrderFromOnePublisher", testOrder},
		{"Burst", testBurst},
		{"HandlerOneCallAtATime", testOneCallAtATime},
		{"SlowHandlerDoesNotBlockPublish", testSlowHandler},
		{"CanceledContext", testCanceledContext},
		{"CloseStopsDelivery", testCloseStopsDelivery},
		{"CloseEndsGoroutines", testCloseEndsGoroutines},
		{"CloseWhileBusy", testCloseWhileBusy},
		{"PublishAfterClose", testPublishAfterClose},
		{"ResyncAfterReconnect", testResync},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newBackend(t))
		})
	}
}

// conn is a bus under test with what it received.
type conn struct {
	bus.Bus
	*recorder
	reconnect func()
	closed    bool
}

// open opens a bus and closes it when the test ends, unless the test did.
func open(t testing.TB, o OpenFunc) *conn {
	t.Helper()
	b, reconnect := o(t)
	c := &conn{Bus: b, recorder: newRecorder(), reconnect: reconnect}
	t.Cleanup(func() {
		if !c.closed {
			c.Close()
		}
	})
	return c
}

// openSubscribed opens a bus and subscribes its recorder.
func openSubscribed(t testing.TB, o OpenFunc) *conn {
	t.Helper()
	c := open(t, o)
	if err := c.Subscribe(c.recorder); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return c
}

func (c *conn) close(t testing.TB) {
	t.Helper()
	c.closed = true
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > waitTime {
		t.Errorf("Close took %v", d)
	}
}

func (c *conn) publish(t testing.TB, e bus.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	if err := c.Publish(ctx, e); err != nil {
		t.Fatalf("Publish(%+v): %v", e, err)
	}
}

// recorder is a bus.Handler that keeps what it is given and checks that
// calls never overlap.
type recorder struct {
	delay time.Duration // each call sleeps this long
	block chan struct{} // if not nil, HandleEvent waits for it to close

	inflight atomic.Int32
	overlap  atomic.Bool

	mu      sync.Mutex
	events  []bus.Event // guarded by mu
	resyncs int         // guarded by mu
	calls   chan struct{}
}

func newRecorder() *recorder {
	return &recorder{calls: make(chan struct{}, 1)}
}

func (r *recorder) enter() {
	if r.inflight.Add(1) > 1 {
		r.overlap.Store(true)
	}
	if r.block != nil {
		<-r.block
	}
	time.Sleep(r.delay)
}

func (r *recorder) leave() {
	r.inflight.Add(-1)
	select {
	case r.calls <- struct{}{}:
	default:
	}
}

// HandleEvent implements bus.Handler.
func (r *recorder) HandleEvent(e bus.Event) {
	r.enter()
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.leave()
}

// Resync implements bus.Handler.
func (r *recorder) Resync() {
	r.enter()
	r.mu.Lock()
	r.resyncs++
	r.mu.Unlock()
	r.leave()
}

func (r *recorder) snapshot() ([]bus.Event, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), r.resyncs
}

// waitFor polls until ok holds of what r received, failing the test after
// waitTime.
func (r *recorder) waitFor(t testing.TB, what string, ok func(events []bus.Event, resyncs int) bool) []bus.Event {
	t.Helper()
	deadline := time.NewTimer(waitTime)
	defer deadline.Stop()
	for {
		evs, resyncs := r.snapshot()
		if ok(evs, resyncs) {
			return evs
		}
		select {
		case <-r.calls:
		case <-time.After(10 * time.Millisecond):
		case <-deadline.C:
			t.Fatalf("%s: not within %v; got %d events and %d resyncs; last events: %v",
				what, waitTime, len(evs), resyncs, tail(evs, 5))
		}
	}
}

// waitEvents waits for at least n events.
func (r *recorder) waitEvents(t testing.TB, n int) []bus.Event {
	t.Helper()
	return r.waitFor(t, fmt.Sprintf("%d events", n), func(evs []bus.Event, _ int) bool { return len(evs) >= n })
}

// checkClean reports overlapping calls and unexpected resyncs.
func (r *recorder) checkClean(t testing.TB, name string) {
	t.Helper()
	if r.overlap.Load() {
		t.Errorf("%s: handler calls overlapped", name)
	}
	if _, resyncs := r.snapshot(); resyncs != 0 {
		t.Errorf("%s: %d Resync calls without a reconnect", name, resyncs)
	}
}

func tail(evs []bus.Event, n int) []bus.Event {
	return evs[max(0, len(evs)-n):]
}

func msg(origin string, id int64) bus.Event {
	return bus.Event{Kind: bus.KindMessage, ID: id, Origin: origin}
}

// byOrigin splits events by origin, each list in the order received.
func byOrigin(evs []bus.Event) map[string][]bus.Event {
	m := make(map[string][]bus.Event)
	for _, e := range evs {
		m[e.Origin] = append(m[e.Origin], e)
	}
	return m
}

// settle gives a wrongly delivered event time to show up.
func settle() { time.Sleep(300 * time.Millisecond) }

func testPublisherReceivesOwn(t *testing.T, o OpenFunc) {
	a := openSubscribed(t, o)
	want := msg("A", 1)
	a.publish(t, want)
	a.waitEvents(t, 1)
	settle()
	evs, _ := a.snapshot()
	if !slices.Equal(evs, []bus.Event{want}) {
		t.Errorf("events = %+v, want exactly %+v", evs, want)
	}
	a.checkClean(t, "A")
}

// testPublishRightAfterSubscribe publishes the moment Subscribe returns,
// from another bus and from the subscriber: both events must arrive, so
// Subscribe may return only once the subscription is in effect (not once a
// connection is up with the subscription still on its way). Repeated on
// fresh buses, as a race in a connection's start shows only sometimes.
func testPublishRightAfterSubscribe(t *testing.T, o OpenFunc) {
	const rounds = 20
	other := open(t, o)
	for i := range rounds {
		c := open(t, o)
		if err := c.Subscribe(c.recorder); err != nil {
			t.Fatalf("round %d: Subscribe: %v", i, err)
		}
		fromOther, fromSelf := msg("other", int64(i+1)), msg("self", int64(i+1))
		other.publish(t, fromOther)
		c.publish(t, fromSelf)
		c.waitFor(t, fmt.Sprintf("round %d: both events published right after Subscribe", i), func(evs []bus.Event, _ int) bool {
			return slices.Contains(evs, fromOther) && slices.Contains(evs, fromSelf)
		})
		c.checkClean(t, fmt.Sprintf("round %d", i))
		c.close(t)
	}
}

func testEveryBusReceivesEvery(t *testing.T, o OpenFunc) {
	const nBuses, perBus = 4, 3
	var buses []*conn
	for range nBuses {
		buses = append(buses, openSubscribed(t, o))
	}
	for i, c := range buses {
		for j := range perBus {
			c.publish(t, bus.Event{Kind: bus.KindPresence, ID: int64(j), Origin: fmt.Sprint("bus", i)})
		}
	}
	for _, c := range buses {
		c.waitEvents(t, nBuses*perBus)
	}
	settle()
	for i, c := range buses {
		evs, _ := c.snapshot()
		if len(evs) != nBuses*perBus {
			t.Errorf("bus%d got %d events, want %d: %+v", i, len(evs), nBuses*perBus, evs)
		}
		got := byOrigin(evs)
		for k := range nBuses {
			origin := fmt.Sprint("bus", k)
			var want []bus.Event
			for j := range perBus {
				want = append(want, bus.Event{Kind: bus.KindPresence, ID: int64(j), Origin: origin})
			}
			if !slices.Equal(got[origin], want) {
				t.Errorf("bus%d got from %s: %+v, want %+v", i, origin, got[origin], want)
			}
		}
		c.checkClean(t, fmt.Sprint("bus", i))
	}
}

func testFieldsIntact(t *testing.T, o OpenFunc) {
	tests := []struct {
		name string
		e    bus.Event
	}{
		{"message", bus.Event{Kind: bus.KindMessage, ID: 42, Origin: "srv-1"}},
		{"presence without id", bus.Event{Kind: bus.KindPresence, Origin: "srv-2"}},
		{"largest id", bus.Event{Kind: bus.KindMessage, ID: math.MaxInt64, Origin: "srv-3"}},
		{"id beyond float64 precision", bus.Event{Kind: bus.KindMessage, ID: 1<<53 + 1, Origin: "srv-4"}},
		{"negative id", bus.Event{Kind: bus.KindMessage, ID: -7, Origin: "srv-5"}},
		{"empty origin", bus.Event{Kind: bus.KindMessage, ID: 1}},
		{"quotes and unicode", bus.Event{Kind: "kind \"x\"\n", ID: 2, Origin: `srv-é/😀"\'`}},
		{"long origin", bus.Event{Kind: bus.KindPresence, Origin: strings.Repeat("srv", 100)}},
		{"sent time", bus.Event{Kind: bus.KindMessage, ID: 3, Origin: "srv-6", Sent: 1764078000123456789}},
		{"every field at its largest", bus.Event{Kind: bus.KindPresence, ID: math.MaxInt64, Origin: "srv-7", Sent: math.MaxInt64}},
	}
	a := openSubscribed(t, o)
	b := openSubscribed(t, o)
	var want []bus.Event
	for _, tt := range tests {
		a.publish(t, tt.e)
		want = append(want, tt.e)
	}
	a.waitEvents(t, len(want))
	b.waitEvents(t, len(want))
	settle()
	for name, c := range map[string]*conn{"publisher": a, "other": b} {
		evs, _ := c.snapshot()
		if len(evs) != len(want) {
			t.Errorf("%s: got %d events, want %d", name, len(evs), len(want))
		}
		for i, tt := range tests {
			if evs[i] != tt.e {
				t.Errorf("%s, %s: got %+v, want %+v", name, tt.name, evs[i], tt.e)
			}
		}
	}
}

func testPublishWithoutSubscribe(t *testing.T, o OpenFunc) {
	pub := open(t, o)
	sub := openSubscribed(t, o)
	want := msg("pub", 5)
	pub.publish(t, want)
	if evs := sub.waitEvents(t, 1); evs[0] != want {
		t.Errorf("got %+v, want %+v", evs[0], want)
	}
}

// sequence publishes n events numbered 1..n from origin, one after another.
func sequence(t testing.TB, c *conn, origin string, n int) {
	t.Helper()
	if err := publishSeq(c, origin, n); err != nil {
		t.Fatal(err)
	}
}

// publishSeq is sequence for goroutines other than the test's: it returns
// the first error.
func publishSeq(b bus.Bus, origin string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTime)
	defer cancel()
	for i := 1; i <= n; i++ {
		if err := b.Publish(ctx, msg(origin, int64(i))); err != nil {
			return fmt.Errorf("%s: Publish %d: %w", origin, i, err)
		}
	}
	return nil
}

// checkSequences checks that evs holds, for each origin, exactly the events
// 1..n in order.
func checkSequences(t testing.TB, name string, evs []bus.Event, origins []string, n int) {
	t.Helper()
	got := byOrigin(evs)
	for _, origin := range origins {
		seq := got[origin]
		if len(seq) != n {
			t.Errorf("%s: %d events from %s, want %d", name, len(seq), origin, n)
		}
		for i, e := range seq {
			if want := msg(origin, int64(i+1)); e != want {
				t.Errorf("%s: event %d from %s is %+v, want %+v (order lost, duplicated or dropped)", name, i, origin, e, want)
				break
			}
		}
		delete(got, origin)
	}
	for origin, seq := range got {
		t.Errorf("%s: %d unexpected events from %q", name, len(seq), origin)
	}
}

func testOrder(t *testing.T, o OpenFunc) {
	const n = 300
	pub := openSubscribed(t, o)
	sub := openSubscribed(t, o)
	sequence(t, pub, "P", n)
	for name, c := range map[string]*conn{"publisher": pub, "other": sub} {
		evs := c.waitEvents(t, n)
		checkSequences(t, name, evs, []string{"P"}, n)
		c.checkClean(t, name)
	}
}

// testBurst has several goroutines publish 2,000 events at once through
// two buses; every subscriber gets all of them, each goroutine's in order.
func testBurst(t *testing.T, o OpenFunc) {
	const goroutines, perGoroutine = 4, 500
	pubs := []*conn{openSubscribed(t, o), openSubscribed(t, o)}
	listener := openSubscribed(t, o)
	var origins []string
	errs := make(chan error, goroutines)
	for g := range goroutines {
		origin := fmt.Sprint("g", g)
		origins = append(origins, origin)
		c := pubs[g%len(pubs)]
		go func() { errs <- publishSeq(c, origin, perGoroutine) }()
	}
	for range goroutines {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	const total = goroutines * perGoroutine
	all := map[string]*conn{"publisher 0": pubs[0], "publisher 1": pubs[1], "listener": listener}
	for _, c := range all {
		c.waitEvents(t, total)
	}
	settle()
	for name, c := range all {
		evs, _ := c.snapshot()
		checkSequences(t, name, evs, origins, perGoroutine)
		c.checkClean(t, name)
	}
}

func testOneCallAtATime(t *testing.T, o OpenFunc) {
	const perBus = 50
	sub := open(t, o)
	sub.delay = time.Millisecond
	if err := sub.Subscribe(sub.recorder); err != nil {
		t.Fatal(err)
	}
	pubs := []*conn{open(t, o), open(t, o), open(t, o)}
	errs := make(chan error, len(pubs))
	for i, c := range pubs {
		go func() { errs <- publishSeq(c, fmt.Sprint("p", i), perBus) }()
	}
	for range pubs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	sub.waitEvents(t, len(pubs)*perBus)
	sub.checkClean(t, "subscriber")
}

// testSlowHandler blocks the handler of the publishing bus: its Publish
// must still return, and once the handler is released everything arrives.
func testSlowHandler(t *testing.T, o OpenFunc) {
	const n = 100
	c := open(t, o)
	c.block = make(chan struct{})
	if err := c.Subscribe(c.recorder); err != nil {
		t.Fatal(err)
	}
	defer func() {
		select {
		case <-c.block:
		default:
			close(c.block)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- publishSeq(c, "S", n) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Publish while the handler is blocked: %v", err)
		}
	case <-time.After(waitTime):
		t.Fatalf("Publish is blocked by a blocked handler")
	}
	close(c.block)
	evs := c.waitEvents(t, n)
	checkSequences(t, "slow handler", evs, []string{"S"}, n)
}

func testCanceledContext(t *testing.T, o OpenFunc) {
	c := open(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Publish(ctx, msg("C", 1)); err == nil {
		t.Errorf("Publish with a canceled context returned nil, want an error")
	}
}

func testCloseStopsDelivery(t *testing.T, o OpenFunc) {
	a := openSubscribed(t, o)
	b := openSubscribed(t, o)
	a.publish(t, msg("A", 1))
	b.waitEvents(t, 1)
	b.close(t)
	atClose, _ := b.snapshot()

	a.publish(t, msg("A", 2))
	a.waitEvents(t, 2)
	settle()
	if evs, _ := b.snapshot(); len(evs) != len(atClose) {
		t.Errorf("closed bus received %v after Close", evs[len(atClose):])
	}
	if err := b.Close(); err != nil {
		t.Logf("second Close: %v", err)
	}
}

// checkGoroutines waits for the number of goroutines to fall back to base,
// and fails with their stacks if it does not.
func checkGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left after Close, %d before the bus opened:\n%s", n, base, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testCloseEndsGoroutines(t *testing.T, o OpenFunc) {
	tests := []struct {
		name      string
		subscribe bool
		publish   int
	}{
		{"never used", false, 0},
		{"publish only", false, 10},
		{"subscribed, idle", true, 0},
		{"subscribed, used", true, 20},
	}
	// A bus that stays open: the backend's shared resources (a pool, a
	// first connection) exist before the count starts.
	other := openSubscribed(t, o)
	other.publish(t, msg("warm-up", 1))
	other.waitEvents(t, 1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			c := open(t, o)
			if tt.subscribe {
				if err := c.Subscribe(c.recorder); err != nil {
					t.Fatal(err)
				}
			}
			sequence(t, c, tt.name, tt.publish)
			if tt.subscribe {
				c.waitEvents(t, tt.publish)
			}
			c.close(t)
			checkGoroutines(t, base)
		})
	}
	t.Run("closed while reconnecting", func(t *testing.T) {
		base := runtime.NumGoroutine()
		c := openSubscribed(t, o)
		if c.reconnect == nil {
			t.Skip("the backend cannot force a reconnect")
		}
		c.reconnect()
		c.close(t)
		checkGoroutines(t, base)
	})
	t.Run("subscribe after Close", func(t *testing.T) {
		base := runtime.NumGoroutine()
		c := open(t, o)
		c.close(t)
		err := c.Subscribe(c.recorder)
		t.Logf("Subscribe after Close: %v", err)
		other.publish(t, msg("other", 2))
		other.waitFor(t, "event of the open bus", func(evs []bus.Event, _ int) bool {
			return slices.Contains(evs, msg("other", 2))
		})
		checkGoroutines(t, base)
		settle()
		if evs, _ := c.snapshot(); len(evs) != 0 {
			t.Errorf("closed bus received %v", evs)
		}
	})
}

// testCloseWhileBusy closes a bus whose handler is behind by many events.
func testCloseWhileBusy(t *testing.T, o OpenFunc) {
	const n = 400
	pub := openSubscribed(t, o)
	pub.publish(t, msg("warm-up", 1))
	pub.waitEvents(t, 1)
	base := runtime.NumGoroutine()
	c := open(t, o)
	c.delay = 2 * time.Millisecond
	if err := c.Subscribe(c.recorder); err != nil {
		t.Fatal(err)
	}
	sequence(t, pub, "P", n)
	c.waitEvents(t, 1)
	c.close(t)
	atClose, _ := c.snapshot()
	checkGoroutines(t, base)
	settle()
	if evs, _ := c.snapshot(); len(evs) != len(atClose) {
		t.Errorf("handler called %d times after Close returned", len(evs)-len(atClose))
	}
	// Whatever was delivered before Close is a prefix of the sequence.
	for i, e := range atClose {
		if want := msg("P", int64(i+1)); e != want {
			t.Fatalf("event %d = %+v, want %+v", i, e, want)
		}
	}
	t.Logf("%d of %d events handled before Close returned", len(atClose), n)
	if c.overlap.Load() {
		t.Errorf("handler calls overlapped")
	}
}

func testPublishAfterClose(t *testing.T, o OpenFunc) {
	c := openSubscribed(t, o)
	other := openSubscribed(t, o)
	c.close(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	// An error, a no-op or a publish are all allowed; the event must not
	// reach the closed bus's handler.
	err := c.Publish(ctx, msg("closed", 1))
	t.Logf("Publish after Close: %v", err)
	other.publish(t, msg("other", 1))
	other.waitFor(t, "event of the open bus", func(evs []bus.Event, _ int) bool {
		return slices.Contains(evs, msg("other", 1))
	})
	settle()
	if evs, _ := c.snapshot(); len(evs) != 0 {
		t.Errorf("closed bus received %v", evs)
	}
}

// testResync makes a bus lose its connection: Resync must follow, and then
// events flow again, published by that bus or another one.
func testResync(t *testing.T, o OpenFunc) {
	a := openSubscribed(t, o)
	if a.reconnect == nil {
		t.Skip("the backend cannot force a reconnect")
	}
	b := openSubscribed(t, o)
	a.publish(t, msg("A", 1))
	a.waitEvents(t, 1)
	b.waitEvents(t, 1)

	a.reconnect()
	a.waitFor(t, "Resync after reconnect", func(_ []bus.Event, resyncs int) bool { return resyncs >= 1 })

	a.publish(t, msg("A", 2))
	for name, c := range map[string]*conn{"reconnected": a, "other": b} {
		c.waitFor(t, "event after reconnect", func(evs []bus.Event, _ int) bool {
			return slices.Contains(evs, msg("A", 2))
		})
		if c.overlap.Load() {
			t.Errorf("%s: handler calls overlapped", name)
		}
	}
	b.publish(t, msg("B", 1))
	a.waitFor(t, "event from the other bus after reconnect", func(evs []bus.Event, _ int) bool {
		return slices.Contains(evs, msg("B", 1))
	})
	b.checkClean(t, "other")
}

// Bench measures how long an event takes from Publish on one bus to
// HandleEvent on another (the lag a chat message gets between servers), and
// how many events a second one listener takes in. Sub-benchmarks:
//   - sequential: one event in flight at a time, the lag of an idle bus;
//   - burst: four goroutines publish b.N events, at most 256 in flight, for
//     the listener's throughput and the lag under that load.
//
// Each reports p50-lag-us, p99-lag-us and events/s.
func Bench(b *testing.B, newBackend NewFunc) {
	b.Run("sequential", func(b *testing.B) { benchPublishDeliver(b, newBackend, 1, 1) })
	b.Run("burst", func(b *testing.B) { benchPublishDeliver(b, newBackend, 4, 256) })
}

const benchOrigin = "bench"

// lagHandler takes the lag of each event from its ID, the time it was
// published as an offset from start: no state shared with the publisher.
type lagHandler struct {
	start  time.Time
	window chan struct{} // a token per event in flight
	warm   chan struct{} // cap 1: a warm-up event arrived
	want   int
	done   chan struct{} // closed when want events arrived
	got    atomic.Int64

	lags    []time.Duration // the bus's goroutine's until done is closed
	resyncs atomic.Int32
}

func (h *lagHandler) HandleEvent(e bus.Event) {
	if e.Origin != benchOrigin {
		select {
		case h.warm <- struct{}{}:
		default:
		}
		return
	}
	h.lags = append(h.lags, time.Since(h.start)-time.Duration(e.ID))
	<-h.window
	if h.got.Add(1) == int64(h.want) {
		close(h.done)
	}
}

func (h *lagHandler) Resync() { h.resyncs.Add(1) }

func benchPublishDeliver(b *testing.B, newBackend NewFunc, publishers, inflight int) {
	o := newBackend(b)
	pub := open(b, o)
	h := &lagHandler{
		start:  time.Now(),
		window: make(chan struct{}, inflight),
		warm:   make(chan struct{}, 1),
		want:   b.N,
		done:   make(chan struct{}),
		lags:   make([]time.Duration, 0, b.N),
	}
	listener := open(b, o)
	if err := listener.Subscribe(h); err != nil {
		b.Fatal(err)
	}
	// Warm up: connections open, first queries planned.
	for range 10 {
		pub.publish(b, msg("warm-up", 0))
		select {
		case <-h.warm:
		case <-time.After(waitTime):
			b.Fatal("warm-up event not delivered")
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, publishers)
	var wg sync.WaitGroup
	b.ResetTimer()
	began := time.Now()
	for p := range publishers {
		n := b.N / publishers
		if p < b.N%publishers {
			n++
		}
		wg.Go(func() {
			for range n {
				select {
				case h.window <- struct{}{}:
				case <-ctx.Done():
					return
				}
				// Sent as the servers set it, for the payload's size.
				e := bus.Event{Kind: bus.KindMessage, ID: int64(time.Since(h.start)), Origin: benchOrigin, Sent: time.Now().UnixNano()}
				if err := pub.Publish(ctx, e); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// Fail when events stop arriving, not after a fixed time: b.N varies.
	for last := int64(-1); ; {
		select {
		case <-h.done:
		case err := <-errs:
			b.Fatalf("Publish: %v", err)
		case <-time.After(waitTime):
			got := h.got.Load()
			if got == last {
				b.Fatalf("stuck at %d of %d events (%d resyncs: events lost)", got, b.N, h.resyncs.Load())
			}
			last = got
			continue
		}
		break
	}
	elapsed := time.Since(began)
	b.StopTimer()
	cancel()
	wg.Wait()

	lags := h.lags
	slices.Sort(lags)
	b.ReportMetric(float64(percentile(lags, 50).Microseconds()), "p50-lag-us")
	b.ReportMetric(float64(percentile(lags, 99).Microseconds()), "p99-lag-us")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// percentile returns the p-th percentile of sorted lags (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
