package postgres_test

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/internal/testpg"
	"github.com/chatd/chat/store"
	"github.com/chatd/chat/store/postgres"
	"github.com/chatd/chat/store/storetest"
)

func open(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t testing.TB) store.Store {
		return open(t, testpg.New(t))
	})
}

func exec(t testing.TB, dsn string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// nodeSchema is the database as the Node server leaves it: its own
// CREATE TABLEs, no constraints beyond the serial, and rows it wrote.
var nodeSchema = []string{
	`CREATE TABLE user_table (username VARCHAR(255), password VARCHAR(255))`,
	`CREATE TABLE chat_history (id SERIAL, content TEXT, username VARCHAR(255))`,
	`INSERT INTO user_table VALUES ('khang', '$2b$10$7sqoeQt0yWuy7Pq8ydvZAO9ZL2vD1DGxWN/MYMBFlsdHGdwbXvyZS')`,
	`INSERT INTO chat_history (content, username) VALUES ('first', 'khang'), ('second', 'minh'), (NULL, 'ghost')`,
}

func TestExistingNodeDatabaseKeepsEveryRow(t *testing.T) {
	dsn := testpg.New(t)
	exec(t, dsn, nodeSchema...)
	s := open(t, dsn)
	ctx := context.Background()

	u, err := s.User(ctx, "khang")
	if err != nil || !strings.HasPrefix(u.PasswordHash, "$2b$10$") {
		t.Fatalf("old user = %+v, %v", u, err)
	}
	msgs, err := s.RecentMessages(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.Username+":"+m.Content)
	}
	if want := "khang:first minh:second ghost:"; strings.Join(got, " ") != want {
		t.Errorf("history = %q, want %q", strings.Join(got, " "), want)
	}
	// New writes continue the old id sequence, and the Node server's own
	// INSERT (without the new columns) still works after our migration.
	m, _, err := s.AddMessage(ctx, store.Message{Content: "from go", Username: "khang"})
	if err != nil || m.ID != 4 {
		t.Errorf("AddMessage after migration = %+v, %v; want id 4", m, err)
	}
	exec(t, dsn, `INSERT INTO chat_history (content, username) VALUES ('from node', 'minh')`,
		`INSERT INTO user_table (username, password) VALUES ('newnode', 'h')`)
	if err := s.CreateUser(ctx, store.User{Username: "khang", PasswordHash: "x"}); err != store.ErrConflict {
		t.Errorf("registering an old name: %v, want ErrConflict", err)
	}
	// Opening again (the backup starting) changes nothing.
	open(t, dsn)
	msgs, _ = s.RecentMessages(ctx, 0)
	if len(msgs) != 5 {
		t.Errorf("after reopen %d messages, want 5", len(msgs))
	}
}

func TestDuplicateUsernamesStopStartup(t *testing.T) {
	dsn := testpg.New(t)
	exec(t, dsn, nodeSchema...)
	exec(t, dsn, `INSERT INTO user_table VALUES ('khang', 'another hash')`)
	_, err := postgres.Open(context.Background(), dsn)
	if err == nil {
		t.Fatal("Open succeeded on a table with a duplicated username")
	}
	for _, want := range []string{`"khang" (2 rows)`, "nothing was changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "another hash") {
		t.Errorf("error leaks a password hash: %q", err)
	}
	// Nothing was changed: both rows are there and no column was added.
	db, _ := sql.Open("postgres", dsn)
	defer db.Close()
	var n int
	db.QueryRow(`SELECT count(*) FROM user_table WHERE username = 'khang'`).Scan(&n)
	if n != 2 {
		t.Errorf("%d rows for khang after failed start, want 2", n)
	}
	db.QueryRow(`SELECT count(*) FROM information_schema.columns
		WHERE table_name = 'chat_history' AND column_name = 'created_at'`).Scan(&n)
	if n != 0 {
		t.Error("a failed start-up still added columns")
	}
}

func TestConcurrentStartup(t *testing.T) {
	dsn := testpg.New(t)
	exec(t, dsn, nodeSchema...)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := postgres.Open(context.Background(), dsn)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("start-up %d: %v", i, err)
		}
	}
}

// TestLegacyRowsBelongToGeneral: the rooms migration on a database the Node
// server used puts every old row, and every row the Node server inserts
// afterwards with its own INSERT, in general, where history and search find
// them; it adds without rewriting the seed's table.
func TestLegacyRowsBelongToGeneral(t *testing.T) {
	dsn := testpg.New(t)
	exec(t, dsn, nodeSchema...)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	filenode := func() (n int64) {
		t.Helper()
		if err := db.QueryRow(`SELECT pg_relation_filenode('chat_history')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := filenode()
	s := open(t, dsn)
	ctx := context.Background()
	if after := filenode(); after != before {
		t.Errorf("chat_history's file changed from %d to %d: a migration rewrote the seed's table", before, after)
	}
	exec(t, dsn, `INSERT INTO chat_history (content, username) VALUES ('node after rooms', 'minh')`)
	msgs, err := s.RecentMessages(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 4 {
		t.Fatalf("general holds %d messages, want the 4 the Node server wrote", len(msgs))
	}
	for _, m := range msgs {
		if m.RoomID != store.General || m.Deleted || !m.Edited.IsZero() {
			t.Errorf("legacy row %+v: want room General, not edited or deleted", m)
		}
	}
	for _, q := range []string{"first", "node rooms"} {
		found, err := s.SearchMessages(ctx, "anyone", q, 0, 10)
		if err != nil || len(found) != 1 {
			t.Errorf("SearchMessages(%q) over legacy rows = %+v, %v; want one", q, found, err)
		}
	}
	// A row with the NULL content the Node server allowed can still be
	// edited by its author.
	var ghost int64
	db.QueryRow(`SELECT id FROM chat_history WHERE username = 'ghost'`).Scan(&ghost)
	if _, _, err := s.EditMessage(ctx, ghost, "ghost", "boo", ""); err != nil {
		t.Errorf("the author of a NULL-content row editing it: %v", err)
	}
	// General is id 1 even though chat_rooms is new, and new rooms follow.
	r, err := s.CreateRoom(ctx, "second room", "khang")
	if err != nil || r.ID != 2 {
		t.Errorf("first CreateRoom = %+v, %v; want id 2", r, err)
	}
	// A second start-up (the backup) applies nothing twice.
	open(t, dsn)
	var rooms int
	db.QueryRow(`SELECT count(*) FROM chat_rooms WHERE name = 'general'`).Scan(&rooms)
	if rooms != 1 {
		t.Errorf("%d general rooms after a second start-up", rooms)
	}
}

// BenchmarkSearch measures SearchMessages over CHAT_BENCH_MESSAGES seeded
// messages (default 20,000), a tenth of them in a room the searcher is not
// in. Results: section "search" of bench/RESULTS.md, at 1,000,000
// messages (BENCH=search bench/run.sh); store/BENCH_SEARCH.md says what
// the queries are.
func BenchmarkSearch(b *testing.B) {
	n := storetest.BenchMessages(b)
	dsn := testpg.New(b)
	s := open(b, dsn)
	exec(b, dsn,
		`INSERT INTO user_table VALUES ('x', 'h'), ('y', 'h')`,
		`INSERT INTO chat_rooms (id, name, kind, created_by, dm_a, dm_b) VALUES (2, '', 'direct', 'x', 'x', 'y')`,
		`INSERT INTO chat_history (content, username, room_id)
			SELECT `+storetest.SeedContent+`, 'u' || (i % 100), CASE WHEN i % 10 = 0 THEN 2 ELSE 1 END
			FROM generate_series(1::bigint, `+strconv.Itoa(n)+`) AS i`,
		`VACUUM ANALYZE chat_history`)
	storetest.BenchSearch(b, s)
}
