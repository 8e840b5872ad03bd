package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
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
