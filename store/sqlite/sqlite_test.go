package sqlite_test

import (
	"context"
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
