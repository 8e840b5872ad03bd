package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store"
	"github.com/chatd/chat/store/sqlite"
)

// flakyHistory fails RecentMessages while failures is above zero.
type flakyHistory struct {
	store.Store
	failures atomic.Int32
}

func (f *flakyHistory) RecentMessages(ctx context.Context, limit int) ([]store.Message, error) {
	if f.failures.Add(-1) >= 0 {
		return nil, errors.New("pq: sorry, too many clients already")
	}
	return f.Store.RecentMessages(ctx, limit)
}

// A new socket's history read that fails briefly (a pool momentarily
// exhausted, a dropped connection) is retried, so the user does not see an
// empty chat; only a lasting failure (the database is down) gives the
// empty history, and the socket stays usable.
func TestHistoryReadFailure(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	flaky := &flakyHistory{Store: st}
	e := startServer(t, server.Config{}, flaky)
	writer := e.connect(t, "writer", "websocket")
	wantAck(t, "register", writer.call("register", creds("keeper", "pw")), success)
	wantAck(t, "login", writer.call("login", creds("keeper", "pw")), success)
	wantAck(t, "send", writer.call("send message", "worth keeping"), success)

	dial := func() (history chan []any, closed chan error) {
		history, closed = make(chan []any, 1), make(chan error, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := sioclient.Dial(ctx, e.url, sioclient.Options{
			OnEvent: func(name string, args []any) {
				if name == "load all messages" {
					history <- args
				}
			},
			OnClose: func(err error) { closed <- err },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return history, closed
	}

	t.Run("brief failure is retried", func(t *testing.T) {
		flaky.failures.Store(2)
		history, _ := dial()
		select {
		case args := <-history:
			if !strings.Contains(jsonOf(args), "worth keeping") {
				t.Fatalf("history after two failed reads: %s", jsonOf(args))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no history after two failed reads")
		}
	})
	t.Run("lasting failure gives an empty history on a usable socket", func(t *testing.T) {
		flaky.failures.Store(1000)
		history, closed := dial()
		select {
		case args := <-history:
			if got := jsonOf(args); got != "[[]]" {
				t.Fatalf("history while the store fails: %s, want empty", got)
			}
		case err := <-closed:
			t.Fatalf("the connection was closed: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no history while the store fails")
		}
		flaky.failures.Store(0)
		history, _ = dial()
		select {
		case args := <-history:
			if !strings.Contains(jsonOf(args), "worth keeping") {
				t.Fatalf("history after the store recovered: %s", jsonOf(args))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no history after the store recovered")
		}
	})
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
