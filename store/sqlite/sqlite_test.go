package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/chatd/chat/store"
	"github.com/chatd/chat/store/sqlite"
	"github.com/chatd/chat/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t testing.TB) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, store.User{Username: "a", PasswordHash: "h"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddMessage(ctx, store.Message{Content: "kept", Username: "a"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if _, err := s.User(ctx, "a"); err != nil {
		t.Errorf("user lost on reopen: %v", err)
	}
	msgs, err := s.RecentMessages(ctx, 0)
	if err != nil || len(msgs) != 1 || msgs[0].Content != "kept" {
		t.Errorf("history after reopen = %+v, %v", msgs, err)
	}
}

func TestOpenBadPath(t *testing.T) {
	_, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "no", "such", "dir", "chat.db"))
	if err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

// TestRoomsMigrationKeepsHistory: a file written before rooms existed opens
// with its messages in general, searchable.
func TestRoomsMigrationKeepsHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{`CREATE TABLE schema_migrations (name TEXT PRIMARY KEY)`}
	for _, name := range []string{"0001_seed_tables.sql", "0002_sessions.sql"} {
		body, err := os.ReadFile(filepath.Join("migrations", name))
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts, string(body), `INSERT INTO schema_migrations VALUES ('migrations/`+name+`')`)
	}
	stmts = append(stmts, `INSERT INTO chat_history (content, username) VALUES ('old words', 'a'), ('older words', 'b')`)
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	db.Close()

	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("open an old file: %v", err)
	}
	defer s.Close()
	msgs, err := s.RecentMessages(ctx, 0)
	if err != nil || len(msgs) != 2 || msgs[0].RoomID != store.General || msgs[1].RoomID != store.General {
		t.Errorf("old history = %+v, %v; want both rows in general", msgs, err)
	}
	found, err := s.SearchMessages(ctx, "anyone", "words", 0, 10)
	if err != nil || len(found) != 2 {
		t.Errorf("search over old rows = %+v, %v; want both (the FTS index is built from them)", found, err)
	}
}

// BenchmarkSearch measures SearchMessages over CHAT_BENCH_MESSAGES seeded
// messages (default 20,000), a tenth of them in a room the searcher is not
// in. Results: section "search" of bench/RESULTS.md, at 1,000,000
// messages (BENCH=search bench/run.sh); store/BENCH_SEARCH.md says what
// the queries are.
func BenchmarkSearch(b *testing.B) {
	n := storetest.BenchMessages(b)
	path := filepath.Join(b.TempDir(), "bench.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`INSERT INTO user_table VALUES ('x', 'h'), ('y', 'h')`,
		`INSERT INTO chat_rooms (id, name, kind, created_by, dm_a, dm_b) VALUES (2, '', 'direct', 'x', 'x', 'y')`,
		`WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ` + strconv.Itoa(n) + `)
		INSERT INTO chat_history (content, username, room_id)
			SELECT ` + storetest.SeedContent + `, 'u' || (i % 100), CASE WHEN i % 10 = 0 THEN 2 ELSE 1 END FROM seq`,
		`ANALYZE`,
	} {
		if _, err := db.Exec(q); err != nil {
			b.Fatalf("%.50s: %v", q, err)
		}
	}
	storetest.BenchSearch(b, s)
}
