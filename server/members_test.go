package server

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/chatd/chat/store"
)

// slowRooms is a store whose MemberRooms answers from a list that the test
// changes, after an optional hook runs (to slip a change in mid-read).
type slowRooms struct {
	store.Rooms
	rooms  atomic.Pointer[[]int64]
	during func()
	reads  atomic.Int32
}

func (s *slowRooms) MemberRooms(_ context.Context, _ string) ([]int64, error) {
	list := *s.rooms.Load()
	s.reads.Add(1)
	if s.during != nil {
		d := s.during
		s.during = nil
		d()
	}
	return list, nil
}

// TestLoadDoesNotUndoALeave: a leave that arrives while a login's read of
// the user's rooms is under way wins over what that read saw, and the
// rooms are read again.
func TestLoadDoesNotUndoALeave(t *testing.T) {
	st := &slowRooms{}
	st.rooms.Store(&[]int64{5, 6})
	ms := newMemberships(st, discardLogger())
	c := &conn{sock: &recorder{}, base: discardLogger()}
	ms.attach(c, "bob")
	// The read sees rooms 5 and 6; meanwhile bob leaves 5 (committed to
	// the store, and the notice applied).
	st.during = func() {
		st.rooms.Store(&[]int64{6})
		ms.apply("bob", 5, false)
	}
	if err := ms.load(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	if ms.in("bob", 5) {
		t.Error("a read from before the leave put room 5 back")
	}
	if !ms.in("bob", 6) || len(ms.recipients(6)) != 1 || len(ms.recipients(5)) != 0 {
		t.Errorf("after the load: in 6 = %v, recipients(6) = %d, recipients(5) = %d", ms.in("bob", 6), len(ms.recipients(6)), len(ms.recipients(5)))
	}
	if n := st.reads.Load(); n != 2 {
		t.Errorf("rooms read %d times, want 2 (the first read was overtaken)", n)
	}
	// The last socket gone, nothing of bob stays.
	ms.detach(c, "bob")
	if len(ms.users) != 0 || len(ms.rooms) != 0 {
		t.Errorf("after the last socket left: users %v, rooms %v", ms.users, ms.rooms)
	}
}
