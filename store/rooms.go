package store

import (
	"context"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// General is the id of the seed's one room, "general". Every database has
// it (a migration creates it with this id), every message the Node server
// inserts belongs to it (the room column's default), and everyone is in it:
// no membership rows are kept for it.
const General int64 = 1

// RoomKind says who may be in a room.
type RoomKind string

const (
	// Public rooms are listed to everyone, and anyone may join or leave.
	Public RoomKind = "public"
	// Direct rooms are the private conversation of exactly two users,
	// created by DirectRoom; nobody joins or leaves them.
	Direct RoomKind = "direct"
)

// Room is a conversation: General, a public room someone created, or a
// direct room of two users.
type Room struct {
	ID   int64
	Name string // empty for a direct room: each side calls it by the other's name
	Kind RoomKind
	// CreatedBy is the user who created it, empty for General.
	CreatedBy string
	Created   time.Time
}

// RoomSummary is one line of a user's room list.
type RoomSummary struct {
	Room
	// Peer is, for a direct room, the other member.
	Peer string
	// Member reports whether the user is in the room (always for General
	// and for the direct rooms listed).
	Member bool
	// LastRead is the user's last-read marker in the room, 0 if none.
	LastRead int64
	// Unread counts the room's messages after LastRead that are not
	// deleted and not the user's own, up to UnreadCap; 0 for a room the
	// user is not in.
	Unread int
}

// UnreadCap bounds a room's unread count, so that listing rooms costs the
// same for a user who has not looked at general in years: a page shows
// "999+" from there.
const UnreadCap = 999

// MaxSearchQuery is the longest search query, in bytes, that
// SearchMessages accepts.
const MaxSearchQuery = 1000

// MaxRoomName is the longest room name, in characters (runes).
const MaxRoomName = 64

// ValidateRoomName returns name as it will be stored, or an *InvalidError
// whose Reason says what is wrong. The rule: surrounding white space is
// trimmed; what remains is 1 to MaxRoomName characters of valid UTF-8 with
// no control characters (newlines, tabs, NUL...) and no bidirectional
// overrides or isolates (U+202A-U+202E, U+2066-U+2069), which could make a
// name display as another. Other Unicode, emoji included, is allowed.
//
// Names are unique without regard to case: "Go" and "GO" are one name
// (compared with RoomNameKey). CreateRoom applies this rule itself; servers
// may call it first to answer without a database round trip.
func ValidateRoomName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", &InvalidError{Reason: "room name is not valid UTF-8"}
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return "", &InvalidError{Reason: "room name is empty"}
	}
	if n := utf8.RuneCountInString(name); n > MaxRoomName {
		return "", &InvalidError{Reason: "room name is longer than 64 characters"}
	}
	for _, r := range name {
		if unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) {
			return "", &InvalidError{Reason: "room name contains a control character"}
		}
	}
	return name, nil
}

// RoomNameKey is the form in which room names are compared for uniqueness:
// upper then lower case, which folds the pairs simple lowercasing misses
// (final sigma). It is computed here rather than in SQL so that both stores
// fold exactly alike (SQLite's lower() only knows ASCII).
func RoomNameKey(name string) string {
	return strings.ToLower(strings.ToUpper(name))
}

// Rooms stores rooms and who is in them. Who may do what:
//
//   - General: everyone is a member; it cannot be joined or left.
//   - Public rooms: listed to everyone; anyone logged in may join and leave.
//     Reading, writing and searching need membership.
//   - Direct rooms: exactly their two users, for good; JoinRoom and
//     LeaveRoom refuse them with ErrForbidden.
//
// Methods return ErrNotFound for a room id that does not exist.
type Rooms interface {
	// CreateRoom creates a public room named name (see ValidateRoomName:
	// an *InvalidError when it breaks the rule) with creator as its first
	// member. It returns ErrConflict when the name, compared without
	// regard to case, is taken, also when two calls race for it.
	CreateRoom(ctx context.Context, name, creator string) (Room, error)
	// Room returns the room with id.
	Room(ctx context.Context, id int64) (Room, error)
	// ListRooms returns every public room and username's direct rooms, in
	// id order (General first), with username's markers and unread counts.
	// An empty username (not logged in) gets the public rooms only.
	ListRooms(ctx context.Context, username string) ([]RoomSummary, error)
	// JoinRoom makes username a member of a public room; joining twice
	// is not an error, nor is joining General. The user's last-read
	// marker moves to the room's newest message: what was said before
	// they joined does not count as unread.
	JoinRoom(ctx context.Context, room int64, username string) error
	// LeaveRoom ends username's membership of a public room; leaving a
	// room one is not in is not an error. General and direct rooms
	// return ErrForbidden.
	LeaveRoom(ctx context.Context, room int64, username string) error
	// IsMember reports whether username may read and write room: true
	// for everyone in General (an empty username included, as the seed
	// shows general to every connection), members elsewhere.
	IsMember(ctx context.Context, room int64, username string) (bool, error)
	// Members lists room's members in the order they joined. For General
	// it is every registered user, by name; servers deliver general to
	// every socket and have no need to ask.
	Members(ctx context.Context, room int64) ([]string, error)
	// MemberRooms returns the ids of the rooms other than General that
	// username is a member of (public rooms joined, direct rooms), in
	// ascending order; none for an empty or unknown username. It is the
	// cheap form of ListRooms that servers read at every login to know
	// which rooms' messages a socket receives.
	MemberRooms(ctx context.Context, username string) ([]int64, error)
	// DirectRoom returns the direct room of a and b, creating it on first
	// use with both as members. Concurrent calls for one pair (in either
	// order) return the same room. It returns ErrNotFound when either user
	// is not registered and an *InvalidError when a == b.
	DirectRoom(ctx context.Context, a, b string) (Room, error)
}

// ReadMarkers stores how far each user has read each room, in the
// database, so a marker holds across reloads, devices and servers.
type ReadMarkers interface {
	// MarkRead moves username's marker in room to messageID and returns
	// the marker. It never moves backwards: a smaller id (a late answer
	// from another tab) leaves the marker where it is. It returns
	// ErrForbidden when username is not a member of room.
	MarkRead(ctx context.Context, username string, room, messageID int64) (int64, error)
	// LastRead returns username's marker in room, 0 when there is none.
	LastRead(ctx context.Context, username string, room int64) (int64, error)
}

// RoomMessages reads, changes and searches messages room by room, on
// behalf of a user: every method that takes a reader returns only what that
// user may read (IsMember), ErrForbidden for a room they may not read and
// ErrNotFound for a room that does not exist.
type RoomMessages interface {
	// RecentRoomMessages returns room's newest limit messages, oldest
	// first; limit <= 0 returns the whole room. Deleted messages are
	// included, marked, with empty Content.
	RecentRoomMessages(ctx context.Context, reader string, room int64, limit int) ([]Message, error)
	// RoomMessagesBefore returns up to limit of room's messages with
	// ID < before, oldest first.
	RoomMessagesBefore(ctx context.Context, reader string, room, before int64, limit int) ([]Message, error)
	// RoomMessagesAfter returns up to limit of room's messages with
	// ID > after, oldest first: what a client missed in a room.
	RoomMessagesAfter(ctx context.Context, reader string, room, after int64, limit int) ([]Message, error)
	// Message returns the message with id in whatever room, or
	// ErrNotFound. It checks no permission: it is for a server relaying
	// an edit it was told about, never for answering a client.
	Message(ctx context.Context, id int64) (Message, error)
	// LatestMessageID returns the highest message id in any room, 0 when
	// there are none: where a server's bus catch-up starts.
	LatestMessageID(ctx context.Context) (int64, error)
	// ChangedSince returns the messages of any room edited or deleted at
	// or after since, by the database's clock (the time of the message's
	// last edit or of its delete), as stored now: deleted ones marked,
	// with empty Content. Of more than limit, only the limit most
	// recently changed; oldest change first, ties by id. limit <= 0
	// returns none. Like MessagesAfter it checks no permission: it is
	// what a server replays after its bus connection was down, each
	// change delivered to the members of the message's room only.
	ChangedSince(ctx context.Context, since time.Time, limit int) ([]Message, error)
	// EditMessage replaces the content of message id and sets its Edited
	// time. Only the author may: another user gets ErrForbidden, or
	// ErrNotFound when they cannot read the message's room at all. A
	// deleted message returns ErrNotFound; empty content is an
	// *InvalidError (delete instead). When clientID is not empty and
	// username already used it for an edit or delete, nothing changes and
	// applied is false: a resent edit is applied once, like a resent
	// message. The message is returned as stored after the call.
	EditMessage(ctx context.Context, id int64, username, content, clientID string) (m Message, applied bool, err error)
	// DeleteMessage marks message id deleted and blanks its content, with
	// the same permission and clientID rules as EditMessage. Deleting a
	// deleted message changes nothing and reports applied false.
	DeleteMessage(ctx context.Context, id int64, username, clientID string) (m Message, applied bool, err error)
	// SearchMessages finds the messages username may read (General and
	// the rooms they are a member of, so never a private room of others
	// nor a public room they have not joined) whose content contains
	// every word of query, newest first, up to limit with ID < before
	// (before <= 0: from the newest). Deleted messages are never found.
	// Any query string up to MaxSearchQuery bytes is accepted (a longer
	// one is an *InvalidError): its words are matched as plain words,
	// never parsed as search syntax, and a query with no words finds
	// nothing.
	SearchMessages(ctx context.Context, username, query string, before int64, limit int) ([]Message, error)
}

// Conversations is everything rooms, direct messages, edits, search and
// unread counts need from a store.
type Conversations interface {
	Rooms
	ReadMarkers
	RoomMessages
}
