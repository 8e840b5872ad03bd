// Package bus carries what one chat server must tell the others that share
// its database: a message was stored, the online list changed. Each server
// then delivers to its own sockets.
//
// Events are small notices, not the data: a receiver reads the message row
// from the database, which stays the single source of truth. So the bus may
// drop notices while it reconnects; it then calls Resync and the server
// catches up from the database.
package bus

import "context"

// Kinds of events.
const (
	// KindMessage: message ID was committed.
	KindMessage = "message"
	// KindPresence: a server's online users changed.
	KindPresence = "presence"
	// KindMember: User joined (or, with Left, left) Room. Receivers apply
	// it to their sockets of User at once and then re-read User's rooms
	// from the database, which settles any reordering of notices.
	KindMember = "member"
	// KindEdit: message ID was edited or deleted; receivers read it again.
	// Edits and deletes missed while the connection was down are found by
	// their time after Resync.
	KindEdit = "edit"
	// KindTyping: User is typing in Room. Never stored; a receiver that
	// misses one loses nothing that lasts.
	KindTyping = "typing"
)

// Event is one notice between servers.
type Event struct {
	Kind string `json:"k"`
	// ID is the message id of a KindMessage or KindEdit event.
	ID int64 `json:"id,omitempty"`
	// Room and User name the room and user of a KindMember or KindTyping
	// event; Left says a KindMember event is a leave.
	Room int64  `json:"r,omitempty"`
	User string `json:"u,omitempty"`
	Left bool   `json:"l,omitempty"`
	// Origin is the publishing server's id, so it can skip its own events.
	Origin string `json:"o"`
	// Sent is when it was published (Unix nanoseconds), for the bus lag
	// metric.
	Sent int64 `json:"t,omitempty"`
}

// Handler receives events from the bus, one call at a time.
type Handler interface {
	// HandleEvent is called for every event published, by any server,
	// this one included.
	HandleEvent(Event)
	// Resync is called after the bus reconnected: events may have been
	// missed, so the server should catch up from the database.
	Resync()
}

// Bus is a publish/subscribe channel between servers.
type Bus interface {
	// Publish sends e to every subscribed server. It returns nil only
	// once the bus has taken e: every server subscribed then receives it,
	// or, if its connection drops first, is told to Resync. So a crash of
	// the publisher right after Publish returns cannot lose e, and a
	// message acknowledged after its Publish reaches every server. It
	// fails when that is not confirmed before ctx ends.
	Publish(ctx context.Context, e Event) error
	// Subscribe starts delivering events to h until Close. It is called
	// at most once. Every event published after it returns reaches h, or
	// h is told to Resync: it returns once the subscription is in effect,
	// or, if that cannot be confirmed in time (the backend is down at
	// start), calls Resync once it is.
	Subscribe(h Handler) error
	// Close stops delivery and releases the connection.
	Close() error
}

// Local is the bus of a single server (the embedded store): there is no one
// to tell, so it does nothing.
type Local struct{}

var _ Bus = Local{}

// Publish implements Bus.
func (Local) Publish(context.Context, Event) error { return nil }

// Subscribe implements Bus.
func (Local) Subscribe(Handler) error { return nil }

// Close implements Bus.
func (Local) Close() error { return nil }
