package store

import (
	"strings"
	"time"
)

// NewMessage returns m as AddMessage stores it: in General when RoomID is
// zero, so that callers that predate rooms land there, and neither edited
// nor deleted, whatever the caller set. The store sets ID and Time. Both
// stores start from it, so a message lands alike in either database.
func NewMessage(m Message) Message {
	if m.RoomID == 0 {
		m.RoomID = General
	}
	m.Edited, m.Deleted = time.Time{}, false
	return m
}

// ValidateNewRoom returns the name CreateRoom stores, or why it refuses:
// the ValidateRoomName rule, then ErrForbidden when there is no creator.
// It is the one check both stores' CreateRoom make before any SQL.
func ValidateNewRoom(name, creator string) (string, error) {
	name, err := ValidateRoomName(name)
	if err != nil {
		return "", err
	}
	if creator == "" {
		return "", ErrForbidden
	}
	return name, nil
}

// DirectPair returns the two users of a direct room in the order both
// stores key it (dm_a < dm_b in their schemas), so that (a, b) and (b, a)
// find one room. It is an *InvalidError when a == b.
func DirectPair(a, b string) (lo, hi string, err error) {
	if a == b {
		return "", "", &InvalidError{Reason: "a direct conversation needs two different users"}
	}
	return min(a, b), max(a, b), nil
}

// ValidateSearchQuery returns an *InvalidError for a query longer than
// MaxSearchQuery bytes. Both stores call it before turning the text into
// their own search syntax, so a client sees one limit and one reason.
func ValidateSearchQuery(query string) error {
	if len(query) > MaxSearchQuery {
		return &InvalidError{Reason: "search query is too long"}
	}
	return nil
}

// RoomAccess is what a store reads before acting on a room for a user:
// the room's kind and whether the user is a member (everyone is, of
// General). Each store reads it with its own query; its methods are the
// rules of what the user may do there, written once for both.
type RoomAccess struct {
	Room   int64
	Kind   RoomKind
	Member bool
}

// CheckMember returns nil when the user may read and write the room,
// ErrForbidden when not.
func (a RoomAccess) CheckMember() error {
	if !a.Member {
		return ErrForbidden
	}
	return nil
}

// Join reports whether joining adds the user to the room: not for General
// or a room they are in (joining twice is not an error), and never for a
// direct room, which returns ErrForbidden.
func (a RoomAccess) Join() (bool, error) {
	switch {
	case a.Room == General || a.Member:
		return false, nil
	case a.Kind != Public:
		return false, ErrForbidden
	}
	return true, nil
}

// Leave returns ErrForbidden for General and direct rooms, which nobody
// leaves.
func (a RoomAccess) Leave() error {
	if a.Room == General || a.Kind != Public {
		return ErrForbidden
	}
	return nil
}

// MessageChange is an edit (of Content) or a delete of message ID, as
// EditMessage and DeleteMessage take them. Both stores check it with
// Validate, read the message and decide with Check, and write only what
// Check allows: the rules are here, the locking and SQL are theirs. A
// change whose ClientID the user already used is a resend: the store
// writes nothing and returns the message the first one changed, applied
// false.
type MessageChange struct {
	ID       int64
	Username string // who asks
	ClientID string // "" when the client sent none
	Delete   bool   // a delete; otherwise an edit to Content
	Content  string
}

// Validate refuses a change before the message is read: an edit to blank
// content is an *InvalidError (delete instead), a change by no user
// ErrForbidden.
func (c MessageChange) Validate() error {
	if !c.Delete && strings.TrimSpace(c.Content) == "" {
		return &InvalidError{Reason: "an edit cannot leave the message empty; delete it instead"}
	}
	if c.Username == "" {
		return ErrForbidden
	}
	return nil
}

// Check decides c against m, the message as stored, and reports whether
// the store writes the change. Only the author may change a message:
// anyone else gets ErrForbidden, or ErrNotFound when canRead says they
// cannot read m's room, so that they learn nothing, not even that it
// exists. A deleted message cannot be edited (ErrNotFound); deleting it
// again writes nothing.
func (c MessageChange) Check(m Message, canRead func(room int64) bool) (write bool, err error) {
	if m.Username != c.Username {
		if !canRead(m.RoomID) {
			return false, ErrNotFound
		}
		return false, ErrForbidden
	}
	if m.Deleted && !c.Delete {
		return false, ErrNotFound
	}
	return !m.Deleted, nil
}
