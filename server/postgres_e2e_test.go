package server_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/chatd/chat/internal/testpg"
	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store"
	"github.com/chatd/chat/store/postgres"
)

func openPostgres(t testing.TB, dsn string) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestProtocolOnPostgres(t *testing.T) {
	e := startServer(t, server.Config{}, openPostgres(t, testpg.New(t)))
	tr := "websocket"
	t.Run("FirstEventIsHistory", func(t *testing.T) { testFirstEventIsHistory(t, e, tr) })
	t.Run("RegisterLoginSend", func(t *testing.T) { testRegisterLoginSend(t, e, tr) })
	t.Run("AnonymousSendGetsReload", func(t *testing.T) { testAnonymousSend(t, e, tr) })
	t.Run("LogoutAndDisconnect", func(t *testing.T) { testLogoutAndDisconnect(t, e, tr) })
	t.Run("TwoTabs", func(t *testing.T) { testTwoTabs(t, e, tr) })
}

// nodeUser is one entry of the fixture made with Node's bcrypt package by
// test/compat/make-node-hash.js.
type nodeUser struct {
	Username, Password, Hash string
}

func nodeUsers(t testing.TB) []nodeUser {
	t.Helper()
	b, err := os.ReadFile("../test/compat/fixtures/node-bcrypt.json")
	if err != nil {
		t.Fatal(err)
	}
	var users []nodeUser
	if err := json.Unmarshal(b, &users); err != nil {
		t.Fatal(err)
	}
	return users
}

// TestNodeDatabase points the server at a database as the Node server left
// it: its own table definitions, users with Node bcrypt hashes, history rows.
// bcrypt10 bounds one answer that needs a cost-10 bcrypt (the Node
// server's hashes): about 50 ms alone, seconds under -race on shared cores.
const bcrypt10 = 30 * time.Second

// Every old user logs in with their password and a newcomer sees the history.
func TestNodeDatabase(t *testing.T) {
	dsn := testpg.New(t)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE TABLE user_table (username VARCHAR(255), password VARCHAR(255))`,
		`CREATE TABLE chat_history (id SERIAL, content TEXT, username VARCHAR(255))`,
		`INSERT INTO chat_history (content, username) VALUES ('hello from node', 'node_alice'), ('second', 'node_bob')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	users := nodeUsers(t)
	for _, u := range users {
		if _, err := db.Exec(`INSERT INTO user_table VALUES ($1, $2)`, u.Username, u.Hash); err != nil {
			t.Fatal(err)
		}
	}

	e := startServer(t, server.Config{BcryptCost: 10}, openPostgres(t, dsn))
	c := e.connect(t, "c", "websocket")
	_, hist := c.waitEvent("load all messages", nil)
	if !containsMsg(hist[0], "hello from node", "node_alice") || !containsMsg(hist[0], "second", "node_bob") {
		t.Errorf("history %v lacks the Node server's rows", hist[0])
	}
	for _, u := range users {
		wantAck(t, "login "+u.Username, c.callWithin(bcrypt10, "login", creds(u.Username, u.Password)), success)
		wantAck(t, "wrong password "+u.Username, c.callWithin(bcrypt10, "login", creds(u.Username, u.Password+"x")), invalidUnlessTruncated(u))
	}
	wantAck(t, "register an old name", c.callWithin(bcrypt10, "register", creds("node_alice", "new")), taken)
}

// invalidUnlessTruncated: appending to a password longer than 72 bytes does
// not change what bcrypt hashed, in Node as here.
func invalidUnlessTruncated(u nodeUser) map[string]any {
	if len(u.Password) > 72 {
		return success
	}
	return invalid
}

// TestTwoProcessesOneDatabase is the primary and the backup: a user who
// registers on one logs in on the other at once, and a message sent on one is
// in the other's history, because neither caches what the database holds.
func TestTwoProcessesOneDatabase(t *testing.T) {
	dsn := testpg.New(t)
	primary := startServer(t, server.Config{}, openPostgres(t, dsn))
	backup := startServer(t, server.Config{}, openPostgres(t, dsn))

	a := primary.connect(t, "a", "websocket")
	wantAck(t, "register on primary", a.call("register", creds("shared", "pw")), success)
	b := backup.connect(t, "b", "websocket")
	wantAck(t, "login on backup", b.call("login", creds("shared", "pw")), success)
	wantAck(t, "same name on backup", b.call("register", creds("shared", "pw2")), taken)

	wantAck(t, "login on primary", a.call("login", creds("shared", "pw")), success)
	wantAck(t, "send on primary", a.call("send message", "written on the primary"), success)
	late := backup.connect(t, "late", "websocket")
	_, hist := late.waitEvent("load all messages", nil)
	if !containsMsg(hist[0], "written on the primary", "shared") {
		t.Errorf("backup's history %v lacks the primary's message", hist[0])
	}
}
