package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chat/store"
)

func TestRoomAccess(t *testing.T) {
	tests := []struct {
		name    string
		a       store.RoomAccess
		member  error
		join    bool
		joinErr error
		leave   error
	}{
		{"general", store.RoomAccess{Room: store.General, Kind: store.Public, Member: true}, nil, false, nil, store.ErrForbidden},
		{"public, not in", store.RoomAccess{Room: 2, Kind: store.Public}, store.ErrForbidden, true, nil, nil},
		{"public, in", store.RoomAccess{Room: 2, Kind: store.Public, Member: true}, nil, false, nil, nil},
		{"direct, not in", store.RoomAccess{Room: 3, Kind: store.Direct}, store.ErrForbidden, false, store.ErrForbidden, store.ErrForbidden},
		{"direct, in", store.RoomAccess{Room: 3, Kind: store.Direct, Member: true}, nil, false, nil, store.ErrForbidden},
	}
	for _, tt := range tests {
		if err := tt.a.CheckMember(); err != tt.member {
			t.Errorf("%s: CheckMember = %v, want %v", tt.name, err, tt.member)
		}
		if join, err := tt.a.Join(); join != tt.join || err != tt.joinErr {
			t.Errorf("%s: Join = %v, %v; want %v, %v", tt.name, join, err, tt.join, tt.joinErr)
		}
		if err := tt.a.Leave(); err != tt.leave {
			t.Errorf("%s: Leave = %v, want %v", tt.name, err, tt.leave)
		}
	}
}

func TestMessageChange(t *testing.T) {
	mine := store.Message{ID: 7, Username: "alice", RoomID: 2}
	gone := mine
	gone.Deleted = true
	edit := store.MessageChange{ID: 7, Username: "alice", Content: "new"}
	del := store.MessageChange{ID: 7, Username: "alice", Delete: true}
	byBob := func(c store.MessageChange) store.MessageChange { c.Username = "bob"; return c }
	tests := []struct {
		name    string
		c       store.MessageChange
		m       store.Message
		canRead bool
		write   bool
		err     error
	}{
		{"edit", edit, mine, true, true, nil},
		{"delete", del, mine, true, true, nil},
		{"edit a deleted message", edit, gone, true, false, store.ErrNotFound},
		{"delete it again", del, gone, true, false, nil},
		{"another's edit", byBob(edit), mine, true, false, store.ErrForbidden},
		{"another's delete", byBob(del), mine, true, false, store.ErrForbidden},
		{"edit by one who cannot read", byBob(edit), mine, false, false, store.ErrNotFound},
		{"delete by one who cannot read", byBob(del), mine, false, false, store.ErrNotFound},
		{"another's edit of a deleted message", byBob(edit), gone, true, false, store.ErrForbidden},
	}
	for _, tt := range tests {
		write, err := tt.c.Check(tt.m, func(room int64) bool {
			if room != tt.m.RoomID {
				t.Errorf("%s: canRead(%d), want the message's room %d", tt.name, room, tt.m.RoomID)
			}
			return tt.canRead
		})
		if write != tt.write || err != tt.err {
			t.Errorf("%s: Check = %v, %v; want %v, %v", tt.name, write, err, tt.write, tt.err)
		}
	}
}

func TestMessageChangeValidate(t *testing.T) {
	tests := []struct {
		name string
		c    store.MessageChange
		want error
	}{
		{"edit", store.MessageChange{Username: "alice", Content: "x"}, nil},
		{"delete", store.MessageChange{Username: "alice", Delete: true}, nil},
		{"blank edit", store.MessageChange{Username: "alice", Content: " \n"}, store.ErrInvalid},
		{"blank edit by no user", store.MessageChange{Content: ""}, store.ErrInvalid},
		{"edit by no user", store.MessageChange{Content: "x"}, store.ErrForbidden},
		{"delete by no user", store.MessageChange{Delete: true}, store.ErrForbidden},
	}
	for _, tt := range tests {
		if err := tt.c.Validate(); !errors.Is(err, tt.want) {
			t.Errorf("%s: Validate = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestNewMessage(t *testing.T) {
	in := store.Message{Content: "hi", Username: "alice", Edited: time.Now(), Deleted: true}
	got := store.NewMessage(in)
	if got.RoomID != store.General || !got.Edited.IsZero() || got.Deleted || got.Content != "hi" {
		t.Errorf("NewMessage(%+v) = %+v; want in General, not edited or deleted", in, got)
	}
	if got := store.NewMessage(store.Message{RoomID: 5}); got.RoomID != 5 {
		t.Errorf("NewMessage kept room %d, want 5", got.RoomID)
	}
}

func TestDirectPair(t *testing.T) {
	for _, ab := range [][2]string{{"ann", "ben"}, {"ben", "ann"}} {
		if lo, hi, err := store.DirectPair(ab[0], ab[1]); lo != "ann" || hi != "ben" || err != nil {
			t.Errorf("DirectPair(%q, %q) = %q, %q, %v; want ann, ben", ab[0], ab[1], lo, hi, err)
		}
	}
	if _, _, err := store.DirectPair("ann", "ann"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("DirectPair(ann, ann) = %v, want ErrInvalid", err)
	}
}

func TestValidateNewRoom(t *testing.T) {
	if name, err := store.ValidateNewRoom(" go ", "alice"); name != "go" || err != nil {
		t.Errorf("ValidateNewRoom = %q, %v; want go", name, err)
	}
	if _, err := store.ValidateNewRoom("go", ""); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("no creator = %v, want ErrForbidden", err)
	}
	// The name is judged first, as a server calling ValidateRoomName does.
	if _, err := store.ValidateNewRoom("", ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("no name, no creator = %v, want ErrInvalid", err)
	}
}

func TestValidateSearchQuery(t *testing.T) {
	if err := store.ValidateSearchQuery(strings.Repeat("a", store.MaxSearchQuery)); err != nil {
		t.Errorf("a query of MaxSearchQuery bytes = %v, want nil", err)
	}
	if err := store.ValidateSearchQuery(strings.Repeat("a", store.MaxSearchQuery+1)); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a longer query = %v, want ErrInvalid", err)
	}
}
