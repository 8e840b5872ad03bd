// Package store defines the chat's domain types and the small interfaces
// through which the server reaches its database.
//
// The database is the only source of truth: implementations keep no cache of
// users or history, so several server processes sharing one database (the
// primary and the backup behind nginx) always agree on who exists and what
// was said. Implementations live in their own packages (store/postgres,
// store/sqlite) and are checked by the shared contract suite in
// store/storetest.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors returned by every implementation. Callers compare them with
// errors.Is; implementations translate their driver's errors into these and
// wrap everything else with context.
var (
	// ErrNotFound means the requested user, room or message does not
	// exist (or, for a message, is one the caller may not know about).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict means a unique value (a username, a room name) is
	// already taken.
	ErrConflict = errors.New("store: conflict")
	// ErrForbidden means the caller may not do this to an existing thing:
	// edit another user's message, join or leave a direct room, write to or
	// read a room they are not a member of.
	ErrForbidden = errors.New("store: forbidden")
	// ErrInvalid means the input breaks a rule the store enforces (a room
	// name's length, say). Such errors are *InvalidError values, whose
	// Reason can be shown to the client as it is.
	ErrInvalid = errors.New("store: invalid")
)

// InvalidError is input refused by a rule. Reason is written for the user
// ("room name is longer than 64 characters") and never holds database text,
// so a server can put it in an acknowledgement. errors.Is(err, ErrInvalid)
// holds for every InvalidError.
type InvalidError struct {
	Reason string
}

func (e *InvalidError) Error() string { return "store: invalid: " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// User is a registered account. PasswordHash is a bcrypt hash as the Node
// server wrote it ($2a$/$2b$); it never leaves the server.
type User struct {
	Username     string
	PasswordHash string
}

// Message is one stored chat line.
type Message struct {
	// ID orders the history; it is the seed's chat_history.id serial.
	ID int64
	// Content is the text as sent; the seed calls it msg on the wire.
	Content string
	// Username is the author; the seed calls it user on the wire.
	Username string
	// Time is when the row was stored. Rows written by the Node server
	// before this column existed carry the time of the migration that
	// added it.
	Time time.Time
	// ClientID is the sender's idempotency key, empty when the client sent
	// none. A (Username, ClientID) pair is stored at most once.
	ClientID string
	// RoomID is the room the message belongs to. Zero in a message given
	// to AddMessage means General, so callers that predate rooms, and rows
	// the Node server inserts without the column, land in general.
	RoomID int64
	// Edited is when the author last changed Content, zero if never.
	Edited time.Time
	// Deleted reports that the author deleted the message. The row stays
	// (ids and paging keep their places) but its Content is
	// blanked, so the text is gone from history, search and from a Node
	// server reading the same table.
	Deleted bool
}

// Users stores accounts.
type Users interface {
	// CreateUser stores a new account. It returns ErrConflict when the
	// username is taken, also when two calls race for one new name.
	CreateUser(ctx context.Context, u User) error
	// User returns the account for username, or ErrNotFound.
	User(ctx context.Context, username string) (User, error)
}

// Messages stores the chat history. RecentMessages and MessagesBefore read
// the room General only: they serve the seed's events, which know one room,
// and must never show a private room's lines to whoever connects.
// MessagesAfter reads every room, because the bus relay catches up on all
// messages by id and decides per message who receives it.
type Messages interface {
	// AddMessage commits m and returns it with ID and Time set. When
	// m.ClientID is not empty and the same user already stored a message
	// with that ClientID, nothing is written and the earlier message is
	// returned with created false, so a resend after a lost
	// acknowledgement is neither lost nor doubled.
	// AddMessage refuses a message to a room other than General with
	// ErrNotFound when the room does not exist and ErrForbidden when
	// m.Username is not a member.
	AddMessage(ctx context.Context, m Message) (stored Message, created bool, err error)
	// RecentMessages returns the newest limit messages of General, oldest
	// first; limit <= 0 returns the whole history, as the seed did.
	// Deleted messages are included, marked Deleted with empty Content.
	RecentMessages(ctx context.Context, limit int) ([]Message, error)
	// MessagesBefore returns up to limit messages of General with
	// ID < before, oldest first: the page that precedes what a client
	// already shows.
	MessagesBefore(ctx context.Context, before int64, limit int) ([]Message, error)
	// MessagesAfter returns up to limit messages of any room with
	// ID > after, oldest first: what a server missed while its bus
	// connection was down. Its result is for the server's own delivery,
	// which must filter by RoomID; it is never a client's history.
	MessagesAfter(ctx context.Context, after int64, limit int) ([]Message, error)
}

// Session is a login that a client can resume without the password, by
// presenting its token. Only the token's hash is stored, so a copy of the
// database does not let anyone log in.
type Session struct {
	TokenHash string
	Username  string
	Expires   time.Time
}

// Sessions stores login sessions.
type Sessions interface {
	// CreateSession stores s.
	CreateSession(ctx context.Context, s Session) error
	// SessionUser returns the user of the session with tokenHash, or
	// ErrNotFound when there is none or it expired before now.
	SessionUser(ctx context.Context, tokenHash string, now time.Time) (string, error)
	// DeleteSession revokes the session with tokenHash; deleting a
	// missing session is not an error.
	DeleteSession(ctx context.Context, tokenHash string) error
}

// Presence is the online list. With a store that several server processes
// share it is cluster-wide: each server records which users have sockets on
// it and renews a heartbeat; a server that stops renewing (it crashed) drops
// out of the list without anyone deleting its rows.
type Presence interface {
	// AddPresence records that username has a socket on server.
	AddPresence(ctx context.Context, server, username string) error
	// RemovePresence records that username has no socket left on server.
	RemovePresence(ctx context.Context, server, username string) error
	// Heartbeat renews server's liveness and returns the database's clock.
	Heartbeat(ctx context.Context, server string) (time.Time, error)
	// OnlineUsers lists, in order of first login, the users present on any
	// server whose heartbeat is newer than since (a database time).
	OnlineUsers(ctx context.Context, since time.Time) ([]string, error)
	// ForgetServer deletes server's rows, at a clean shutdown.
	ForgetServer(ctx context.Context, server string) error
}

// Store is everything the chat server needs from a database.
type Store interface {
	Users
	Messages
	Sessions
	Presence
	Conversations
	// Ping reports whether the database is reachable; /readyz uses it.
	Ping(ctx context.Context) error
}

// Closer is implemented by stores that hold resources (connections, files).
// It is separate from Store so that wrappers need not forward it.
type Closer interface {
	Close() error
}
