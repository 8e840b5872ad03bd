package server

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/chatd/chat/server/socketio"
	"github.com/chatd/chat/store"
)

// Acknowledgement texts of the conversation events (rooms, direct
// messages, edits, typing, search, read markers).
const (
	// msgNoRoom answers every use of a room the caller may not use: one
	// that does not exist, a direct room of others, a public room they
	// have not joined. One text for all, so that an answer never tells
	// whether a room id exists.
	msgNoRoom = "No such room, or you are not a member of it"
	// msgNoMessage answers an edit or delete of a message that does not
	// exist, is deleted, is in a room the caller cannot read, or is
	// someone else's: again one text for all.
	msgNoMessage        = "No such message of yours"
	msgBadRoom          = "Expected {room: room id}"
	msgBadCreate        = "Expected {name: room name}"
	msgRoomTaken        = "A room with that name already exists"
	msgCannotLeave      = "You cannot leave this room"
	msgBadRoomSend      = "Expected {room: room id, msg: text, id?: resend key}"
	msgBadDirect        = "Expected {to: username, msg: text, id?: resend key}"
	msgNoUser           = "No such user"
	msgSelfDirect       = "You cannot send a direct message to yourself"
	msgBadRoomPage      = "Expected {room: room id, before?: message id, limit?: 1 to 100}"
	msgBadEdit          = "Expected {message: message id, msg: text, id?: resend key}"
	msgBadDelete        = "Expected {message: message id, id?: resend key}"
	msgBadSearch        = "Expected {q: text, before?: message id, limit?: 1 to 100}"
	msgSearchTooLong    = "Search text must be at most 1000 bytes"
	msgBadMark          = "Expected {room: room id, message: message id}"
	msgTooFastRooms     = "You are doing that too fast; please wait a moment"
	msgTooFastTyping    = "Typing notices are limited to one every 2 seconds per room"
	msgTooFastTypingAll = "You are sending typing notices too fast"
	// msgBadInput answers input refused for a reason that has no text
	// of its own.
	msgBadInput = "Invalid input"
)

// wireRoomMessage is a message as the conversation events carry it: the
// seed's fields, the room, and a deleted marker.
type wireRoomMessage struct {
	wireMessage
	Room int64 `json:"room"`
	// Deleted marks a deleted message; its msg is empty.
	Deleted bool `json:"deleted,omitempty"`
}

func roomWire(m store.Message) wireRoomMessage {
	room := m.RoomID
	if room == 0 {
		room = store.General
	}
	return wireRoomMessage{wireMessage: wireMsg(m), Room: room, Deleted: m.Deleted}
}

func roomWires(ms []store.Message) []wireRoomMessage {
	out := make([]wireRoomMessage, len(ms))
	for i, m := range ms {
		out[i] = roomWire(m)
	}
	return out
}

// roomEventText is event carrying m, as one Socket.IO packet encoded once
// for every recipient.
func roomEventText(event string, m store.Message) string {
	return eventText(event, roomWire(m))
}

func eventText(event string, payload any) string {
	p, err := socketio.PrepareEvent(event, payload)
	if err != nil {
		// Every payload here is strings, numbers and booleans.
		panic("server: encoding " + event + ": " + err.Error())
	}
	return p.Texts()[0]
}

// wireRoom is one room as `list rooms`, `create room` and `join room`
// answer it.
type wireRoom struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Peer is the other member of a direct room.
	Peer     string `json:"peer,omitempty"`
	Member   bool   `json:"member"`
	LastRead int64  `json:"lastRead"`
	Unread   int    `json:"unread"`
}

func roomSummaryWire(r store.RoomSummary) wireRoom {
	return wireRoom{ID: r.ID, Name: r.Name, Kind: string(r.Kind), Peer: r.Peer, Member: r.Member, LastRead: r.LastRead, Unread: r.Unread}
}

// objectArg returns the first argument as an object.
func objectArg(args []any) (map[string]any, bool) {
	if len(args) == 0 {
		return nil, false
	}
	obj, ok := args[0].(map[string]any)
	return obj, ok
}

// idField reads obj[key] as an id: a whole number from 1 to 2^53 (JSON
// numbers arrive as float64).
func idField(obj map[string]any, key string) (int64, bool) {
	f, ok := obj[key].(float64)
	if !ok || f < 1 || f > 1<<53 || f != float64(int64(f)) {
		return 0, false
	}
	return int64(f), true
}

// maxMessageID is the highest id a message can have: chat_history.id is
// the seed's serial, a 32-bit integer, and PostgreSQL refuses to compare
// it with a larger number (an error, not an empty answer).
const maxMessageID = 1<<31 - 1

// optIDField is idField for an optional field: absent or null gives 0.
func optIDField(obj map[string]any, key string) (int64, bool) {
	if raw, has := obj[key]; !has || raw == nil {
		return 0, true
	}
	return idField(obj, key)
}

// beforeField reads the optional paging bound obj["before"]: 0 when
// absent, and a bound above every possible id when larger.
func beforeField(obj map[string]any) (int64, bool) {
	before, ok := optIDField(obj, "before")
	return min(before, maxMessageID), ok
}

// messageField reads obj[key] as a message id; one above every
// possible id is no message, and reported as not ok with known true.
func messageField(obj map[string]any, key string) (id int64, ok, tooBig bool) {
	id, ok = idField(obj, key)
	if ok && id > maxMessageID {
		return 0, false, true
	}
	return id, ok, false
}

// limitField reads the optional page size obj["limit"], 1 to maxPage,
// defaultPage when absent.
func limitField(obj map[string]any) (int, bool) {
	raw, has := obj["limit"]
	if !has || raw == nil {
		return defaultPage, true
	}
	l, ok := raw.(float64)
	if !ok || l < 1 || l > maxPage || l != float64(int(l)) {
		return 0, false
	}
	return int(l), true
}

// roomArg reads {room} of join, leave and typing.
func roomArg(args []any) (int64, error) {
	obj, ok := objectArg(args)
	if !ok {
		return 0, inputErr(msgBadRoom)
	}
	room, ok := idField(obj, "room")
	if !ok {
		return 0, inputErr(msgBadRoom)
	}
	return room, nil
}

// textAndKey reads {msg, id?} of obj: the text by the rule of send
// message and the optional resend key; bad is the answer to a wrong
// shape.
func textAndKey(obj map[string]any, maxLen int, bad string) (text, clientID string, err error) {
	text, isText := obj["msg"].(string)
	if !isText {
		return "", "", inputErr(bad)
	}
	if err := checkText(text, maxLen); err != nil {
		return "", "", err
	}
	clientID, err = clientIDOf(obj)
	return text, clientID, err
}

// invalidReason turns a store rule's reason ("room name is empty") into
// an answer ("Room name is empty").
func invalidReason(ie *store.InvalidError) string {
	r := ie.Reason
	if r == "" {
		return msgBadInput
	}
	first, n := utf8.DecodeRuneInString(r)
	return string(unicode.ToUpper(first)) + strings.TrimSuffix(r[n:], ".")
}
