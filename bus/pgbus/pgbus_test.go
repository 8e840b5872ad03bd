package pgbus_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/bus/bustest"
	"github.com/chatd/chat/bus/pgbus"
	"github.com/chatd/chat/internal/testpg"
)

func TestContract(t *testing.T) {
	testpg.AdminURL(t) // skip once rather than in every subtest
	bustest.Run(t, newBackend)
}

// BenchmarkPublishDeliver: publish on one server, handled on another.
//
//	TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable \
//	go test -run '^$' -bench PublishDeliver -benchtime 3000x -count 3 ./bus/pgbus
//
// Results, beside NATS's: section "bus" of bench/RESULTS.md (BENCH=bus
// bench/run.sh).
func BenchmarkPublishDeliver(b *testing.B) {
	bustest.Bench(b, newBackend)
}

var busCount atomic.Int64

// newBackend makes a database of its own; its buses share one pool, like
// the servers' stores, and each listens as an application_name of its own
// so that one can be disconnected alone.
func newBackend(t testing.TB) bustest.OpenFunc {
	dsn := testpg.New(t)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return func(t testing.TB) (bus.Bus, func()) {
		name := fmt.Sprint("pgbus_test_", busCount.Add(1))
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("application_name", name)
		u.RawQuery = q.Encode()
		b := pgbus.New(db, u.String(), slog.New(slog.DiscardHandler))
		reconnect := func() {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var n int
			err := db.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND application_name = $1`, name).Scan(&n)
			if err != nil {
				t.Fatalf("terminate the listener: %v", err)
			}
			if n != 1 {
				t.Fatalf("terminated %d listener connections, want 1", n)
			}
		}
		return b, reconnect
	}
}
