package pgbus_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/bus/pgbus"
	"github.com/chatd/chat/internal/testpg"
)

type recorder struct {
	mu      sync.Mutex
	events  []bus.Event
	resyncs int
	got     chan struct{}
}

func (r *recorder) HandleEvent(e bus.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
}

func (r *recorder) Resync() {
	r.mu.Lock()
	r.resyncs++
	r.mu.Unlock()
}

func (r *recorder) wait(t *testing.T, n int) []bus.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		evs := append([]bus.Event(nil), r.events...)
		r.mu.Unlock()
		if len(evs) >= n {
			return evs
		}
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("got %d events within 5 s, want %d: %v", len(evs), n, evs)
		}
	}
}

func newBus(t *testing.T, dsn string) (*pgbus.Bus, *recorder) {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b := pgbus.New(db, dsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r := &recorder{got: make(chan struct{}, 1)}
	if err := b.Subscribe(r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, r
}

func TestPublishReachesEverySubscriber(t *testing.T) {
	dsn := testpg.New(t)
	a, ra := newBus(t, dsn)
	b, rb := newBus(t, dsn)
	ctx := context.Background()
	if err := a.Publish(ctx, bus.Event{Kind: bus.KindMessage, ID: 7, Origin: "A"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, bus.Event{Kind: bus.KindPresence, Origin: "B"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*recorder{ra, rb} {
		evs := r.wait(t, 2)
		if evs[0] != (bus.Event{Kind: bus.KindMessage, ID: 7, Origin: "A"}) || evs[1] != (bus.Event{Kind: bus.KindPresence, Origin: "B"}) {
			t.Errorf("events = %+v", evs)
		}
	}
}
