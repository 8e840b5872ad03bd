package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/store"
)

// roomTests are the contract of store.Conversations; Run runs them with
// the rest.
var roomTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"GeneralExists", testGeneralExists},
	{"CreateRoom", testCreateRoom},
	{"RoomNameRules", testRoomNameRules},
	{"RoomNamesIgnoreCase", testRoomNamesIgnoreCase},
	{"ConcurrentCreateRoom", testConcurrentCreateRoom},
	{"JoinAndLeave", testJoinAndLeave},
	{"DirectRoom", testDirectRoom},
	{"MemberRooms", testMemberRooms},
	{"ConcurrentDirectRoom", testConcurrentDirectRoom},
	{"RoomHistory", testRoomHistory},
	{"PrivateRoomStaysPrivate", testPrivateRoomStaysPrivate},
	{"EditMessage", testEditMessage},
	{"EditIdempotent", testEditIdempotent},
	{"ConcurrentEditResends", testConcurrentEditResends},
	{"DeleteMessage", testDeleteMessage},
	{"ChangedSince", testChangedSince},
	{"ReadMarkers", testReadMarkers},
	{"UnreadCounts", testUnreadCounts},
	{"Search", testSearch},
	{"SearchPermissions", testSearchPermissions},
	{"SearchAnyString", testSearchAnyString},
}

// users registers names, for the methods that check users exist.
func users(t *testing.T, s store.Store, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := s.CreateUser(ctx(t), store.User{Username: n, PasswordHash: hash}); err != nil {
			t.Fatalf("CreateUser(%s): %v", n, err)
		}
	}
}

func mustRoom(t *testing.T, s store.Store, name, creator string) store.Room {
	t.Helper()
	r, err := s.CreateRoom(ctx(t), name, creator)
	if err != nil {
		t.Fatalf("CreateRoom(%q, %s): %v", name, creator, err)
	}
	return r
}

func mustDirect(t *testing.T, s store.Store, a, b string) store.Room {
	t.Helper()
	r, err := s.DirectRoom(ctx(t), a, b)
	if err != nil {
		t.Fatalf("DirectRoom(%s, %s): %v", a, b, err)
	}
	return r
}

func post(t *testing.T, s store.Store, room int64, user, text string) store.Message {
	t.Helper()
	m, _, err := s.AddMessage(ctx(t), store.Message{RoomID: room, Username: user, Content: text})
	if err != nil {
		t.Fatalf("AddMessage(room %d, %s, %q): %v", room, user, text, err)
	}
	return m
}

func summary(t *testing.T, s store.Store, user string, room int64) (store.RoomSummary, bool) {
	t.Helper()
	list, err := s.ListRooms(ctx(t), user)
	if err != nil {
		t.Fatalf("ListRooms(%s): %v", user, err)
	}
	for _, rs := range list {
		if rs.ID == room {
			return rs, true
		}
	}
	return store.RoomSummary{}, false
}

func unread(t *testing.T, s store.Store, user string, room int64) int {
	t.Helper()
	rs, ok := summary(t, s, user, room)
	if !ok {
		t.Fatalf("room %d not in %s's list", room, user)
	}
	return rs.Unread
}

func testGeneralExists(t *testing.T, s store.Store) {
	c := ctx(t)
	g, err := s.Room(c, store.General)
	if err != nil {
		t.Fatalf("Room(General): %v", err)
	}
	if g.Name != "general" || g.Kind != store.Public || g.ID != store.General {
		t.Errorf("General = %+v", g)
	}
	m := post(t, s, 0, "alice", "no room given")
	if m.RoomID != store.General {
		t.Errorf("AddMessage without a room stored in room %d, want General", m.RoomID)
	}
	got, err := s.RecentMessages(c, 0)
	if err != nil || len(got) != 1 || got[0].RoomID != store.General || got[0].Edited != (time.Time{}) || got[0].Deleted {
		t.Errorf("RecentMessages = %+v, %v", got, err)
	}
	for _, u := range []string{"", "alice", "stranger"} {
		if ok, err := s.IsMember(c, store.General, u); !ok || err != nil {
			t.Errorf("IsMember(General, %q) = %v, %v; everyone is in general", u, ok, err)
		}
		list, err := s.ListRooms(c, u)
		if err != nil || len(list) != 1 || list[0].ID != store.General || !list[0].Member {
			t.Errorf("ListRooms(%q) = %+v, %v; want general alone", u, list, err)
		}
	}
	if _, err := s.Room(c, 9999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Room(9999) error = %v, want ErrNotFound", err)
	}
	if err := s.JoinRoom(c, store.General, "alice"); err != nil {
		t.Errorf("JoinRoom(General) = %v, want nil (everyone is in it)", err)
	}
	if err := s.LeaveRoom(c, store.General, "alice"); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("LeaveRoom(General) = %v, want ErrForbidden", err)
	}
	users(t, s, "zed", "amy")
	if got, err := s.Members(c, store.General); err != nil || fmt.Sprint(got) != "[amy zed]" {
		t.Errorf("Members(General) = %v, %v; want every registered user by name", got, err)
	}
	if id, err := s.LatestMessageID(c); err != nil || id != m.ID {
		t.Errorf("LatestMessageID = %d, %v; want %d", id, err, m.ID)
	}
}

func testCreateRoom(t *testing.T, s store.Store) {
	c := ctx(t)
	before := time.Now().Add(-time.Minute)
	r := mustRoom(t, s, "  Gophers  ", "alice")
	if r.ID <= store.General || r.Name != "Gophers" || r.Kind != store.Public || r.CreatedBy != "alice" {
		t.Errorf("CreateRoom = %+v; want a new public room named Gophers by alice", r)
	}
	if r.Created.Before(before) || r.Created.After(time.Now().Add(time.Minute)) {
		t.Errorf("Created = %v, want about now", r.Created)
	}
	if got, err := s.Room(c, r.ID); err != nil || got != r {
		t.Errorf("Room(%d) = %+v, %v; want %+v", r.ID, got, err, r)
	}
	if got, err := s.Members(c, r.ID); err != nil || fmt.Sprint(got) != "[alice]" {
		t.Errorf("Members = %v, %v; want the creator", got, err)
	}
	if _, err := s.CreateRoom(c, "nobody's", ""); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("CreateRoom by no user = %v, want ErrForbidden", err)
	}
	// Everyone sees a public room; only members have it as theirs.
	rs, ok := summary(t, s, "bob", r.ID)
	if !ok || rs.Member || rs.Name != "Gophers" || rs.Unread != 0 {
		t.Errorf("bob's list entry = %+v (listed %v); want listed, not a member", rs, ok)
	}
	rs, ok = summary(t, s, "alice", r.ID)
	if !ok || !rs.Member {
		t.Errorf("alice's list entry = %+v (listed %v); want a member", rs, ok)
	}
	r2 := mustRoom(t, s, "second", "bob")
	list, err := s.ListRooms(c, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, rs := range list {
		ids = append(ids, rs.ID)
	}
	if want := []int64{store.General, r.ID, r2.ID}; !slices.Equal(ids, want) {
		t.Errorf("ListRooms ids = %v, want %v (id order, general first)", ids, want)
	}
}

func testRoomNameRules(t *testing.T, s store.Store) {
	tests := []struct {
		name, in, want string // want "" means refused
	}{
		{"plain", "go", "go"},
		{"trimmed", " \t go time \n", "go time"},
		{"unicode", "日本語 ☕", "日本語 ☕"},
		{"64 characters", strings.Repeat("é", 64), strings.Repeat("é", 64)},
		{"emoji sequence", "👨‍👩‍👧 family", "👨‍👩‍👧 family"},
		{"empty", "", ""},
		{"only spaces", "   ", ""},
		{"65 characters", strings.Repeat("a", 65), ""},
		{"newline inside", "a\nb", ""},
		{"NUL", "a\x00b", ""},
		{"escape", "a\x1b[31mb", ""},
		{"bidi override", "abc\u202Egpj.exe", ""},
		{"bidi isolate", "a\u2066b", ""},
		{"invalid UTF-8", "a\xffb", ""},
	}
	for _, tt := range tests {
		got, err := store.ValidateRoomName(tt.in)
		if tt.want == "" {
			var ie *store.InvalidError
			if !errors.As(err, &ie) || !errors.Is(err, store.ErrInvalid) || ie.Reason == "" {
				t.Errorf("%s: ValidateRoomName(%q) = %q, %v; want an InvalidError with a reason", tt.name, tt.in, got, err)
			}
			if _, err := s.CreateRoom(ctx(t), tt.in, "alice"); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("%s: CreateRoom(%q) = %v, want ErrInvalid", tt.name, tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: ValidateRoomName(%q) = %q, %v; want %q", tt.name, tt.in, got, err, tt.want)
			continue
		}
		if r, err := s.CreateRoom(ctx(t), tt.in, "alice"); err != nil || r.Name != tt.want {
			t.Errorf("%s: CreateRoom(%q) = %+v, %v", tt.name, tt.in, r, err)
		}
	}
}

func testRoomNamesIgnoreCase(t *testing.T, s store.Store) {
	c := ctx(t)
	mustRoom(t, s, "Golang", "alice")
	mustRoom(t, s, "σίσυφος", "alice")
	for _, name := range []string{"golang", "GOLANG", " gOlAnG ", "General", "GENERAL", "ΣΊΣΥΦΟΣ", "σίσυφοσ"} {
		if _, err := s.CreateRoom(c, name, "bob"); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateRoom(%q) = %v, want ErrConflict", name, err)
		}
	}
	if _, err := s.CreateRoom(c, "golang2", "bob"); err != nil {
		t.Errorf("a different name: %v", err)
	}
	// Direct rooms have no name to collide with.
	users(t, s, "u1", "u2", "u3")
	mustDirect(t, s, "u1", "u2")
	mustDirect(t, s, "u1", "u3")
}

func testConcurrentCreateRoom(t *testing.T, s store.Store) {
	c := ctx(t)
	names := []string{"Race", "race", "RACE", "rAce", "raCE", "racE", " race", "Race "}
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Go(func() {
			_, errs[i] = s.CreateRoom(c, n, fmt.Sprint("user", i))
		})
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("CreateRoom(%q): %v", names[i], err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d racing CreateRoom calls succeeded, want 1", ok, len(names))
	}
}

func testJoinAndLeave(t *testing.T, s store.Store) {
	c := ctx(t)
	r := mustRoom(t, s, "lobby", "alice")
	for range 2 { // joining twice is not an error
		if err := s.JoinRoom(c, r.ID, "bob"); err != nil {
			t.Fatalf("JoinRoom: %v", err)
		}
	}
	if ok, err := s.IsMember(c, r.ID, "bob"); !ok || err != nil {
		t.Errorf("IsMember(bob) after join = %v, %v", ok, err)
	}
	if ok, err := s.IsMember(c, r.ID, "carol"); ok || err != nil {
		t.Errorf("IsMember(carol) = %v, %v; want false", ok, err)
	}
	if ok, err := s.IsMember(c, r.ID, ""); ok || err != nil {
		t.Errorf("IsMember(no user) = %v, %v; want false", ok, err)
	}
	if got, _ := s.Members(c, r.ID); fmt.Sprint(got) != "[alice bob]" {
		t.Errorf("Members = %v, want [alice bob] in order of joining", got)
	}
	for range 2 { // leaving twice is not an error
		if err := s.LeaveRoom(c, r.ID, "bob"); err != nil {
			t.Fatalf("LeaveRoom: %v", err)
		}
	}
	if ok, _ := s.IsMember(c, r.ID, "bob"); ok {
		t.Error("bob is still a member after leaving")
	}
	if got, _ := s.Members(c, r.ID); fmt.Sprint(got) != "[alice]" {
		t.Errorf("Members after leave = %v", got)
	}
	if err := s.JoinRoom(c, r.ID, ""); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("JoinRoom by no user = %v, want ErrForbidden", err)
	}
	for name, err := range map[string]error{
		"JoinRoom":  s.JoinRoom(c, 9999, "bob"),
		"LeaveRoom": s.LeaveRoom(c, 9999, "bob"),
		"IsMember":  func() error { _, err := s.IsMember(c, 9999, "bob"); return err }(),
		"Members":   func() error { _, err := s.Members(c, 9999); return err }(),
	} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s(unknown room) = %v, want ErrNotFound", name, err)
		}
	}
}

func testDirectRoom(t *testing.T, s store.Store) {
	c := ctx(t)
	users(t, s, "alice", "bob", "carol")
	d := mustDirect(t, s, "alice", "bob")
	if d.Kind != store.Direct || d.ID <= store.General || d.Name != "" {
		t.Errorf("DirectRoom = %+v; want a direct room with no name", d)
	}
	if again := mustDirect(t, s, "bob", "alice"); again.ID != d.ID {
		t.Errorf("DirectRoom(bob, alice) = room %d, want %d (one room per pair)", again.ID, d.ID)
	}
	if got, _ := s.Members(c, d.ID); !slices.Equal(sorted(got), []string{"alice", "bob"}) {
		t.Errorf("Members = %v, want alice and bob", got)
	}
	if err := s.JoinRoom(c, d.ID, "carol"); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("carol JoinRoom(direct) = %v, want ErrForbidden", err)
	}
	if err := s.LeaveRoom(c, d.ID, "alice"); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("alice LeaveRoom(direct) = %v, want ErrForbidden", err)
	}
	if ok, _ := s.IsMember(c, d.ID, "carol"); ok {
		t.Error("carol is a member of alice and bob's room")
	}
	if _, err := s.DirectRoom(c, "alice", "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DirectRoom with an unknown user = %v, want ErrNotFound", err)
	}
	if _, err := s.DirectRoom(c, "alice", "alice"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("DirectRoom(alice, alice) = %v, want ErrInvalid", err)
	}
	for user, peer := range map[string]string{"alice": "bob", "bob": "alice"} {
		rs, ok := summary(t, s, user, d.ID)
		if !ok || rs.Peer != peer || !rs.Member || rs.Kind != store.Direct {
			t.Errorf("%s's entry for the direct room = %+v (listed %v); want peer %s", user, rs, ok, peer)
		}
	}
	for _, user := range []string{"carol", ""} {
		if rs, ok := summary(t, s, user, d.ID); ok {
			t.Errorf("%q's list shows alice and bob's room: %+v", user, rs)
		}
	}
	other := mustDirect(t, s, "carol", "alice")
	if other.ID == d.ID {
		t.Error("two pairs share one room")
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func testConcurrentDirectRoom(t *testing.T, s store.Store) {
	c := ctx(t)
	users(t, s, "ann", "ben")
	const racers = 8
	for round := range 3 {
		a, b := "ann", "ben"
		if round > 0 {
			a = fmt.Sprint("r", round, "a")
			b = fmt.Sprint("r", round, "b")
			users(t, s, a, b)
		}
		var wg sync.WaitGroup
		ids := make([]int64, racers)
		errs := make([]error, racers)
		for i := range racers {
			wg.Go(func() {
				x, y := a, b
				if i%2 == 1 {
					x, y = y, x
				}
				r, err := s.DirectRoom(c, x, y)
				ids[i], errs[i] = r.ID, err
			})
		}
		wg.Wait()
		for i := range racers {
			if errs[i] != nil {
				t.Fatalf("DirectRoom racer %d: %v", i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Fatalf("racing DirectRoom calls returned rooms %v, want one", ids)
			}
		}
		if got, _ := s.Members(c, ids[0]); len(got) != 2 {
			t.Errorf("Members after the race = %v, want two", got)
		}
		list, _ := s.ListRooms(c, a)
		direct := 0
		for _, rs := range list {
			if rs.Kind == store.Direct {
				direct++
			}
		}
		if direct != 1 {
			t.Errorf("%s has %d direct rooms after the race, want 1", a, direct)
		}
	}
}

func testRoomHistory(t *testing.T, s store.Store) {
	c := ctx(t)
	r := mustRoom(t, s, "books", "alice")
	g1 := post(t, s, store.General, "alice", "g1")
	var inRoom []store.Message
	for i := range 5 {
		inRoom = append(inRoom, post(t, s, r.ID, "alice", fmt.Sprint("r", i)))
	}
	g2 := post(t, s, 0, "bob", "g2")
	if inRoom[0].RoomID != r.ID {
		t.Errorf("stored in room %d, want %d", inRoom[0].RoomID, r.ID)
	}
	// The seed's reads are general's alone.
	if got, _ := s.RecentMessages(c, 0); fmt.Sprint(contents(got)) != "[g1 g2]" {
		t.Errorf("RecentMessages = %v, want general's [g1 g2]", contents(got))
	}
	if got, _ := s.MessagesBefore(c, g2.ID, 10); fmt.Sprint(contents(got)) != "[g1]" {
		t.Errorf("MessagesBefore = %v, want [g1]", contents(got))
	}
	// The relay's read is every room's, with each message's room.
	all, err := s.MessagesAfter(c, g1.ID-1, 100)
	if err != nil || len(all) != 7 || all[1].RoomID != r.ID || all[6].RoomID != store.General {
		t.Errorf("MessagesAfter = %+v, %v; want all 7 with their rooms", all, err)
	}
	if id, _ := s.LatestMessageID(c); id != g2.ID {
		t.Errorf("LatestMessageID = %d, want %d", id, g2.ID)
	}
	if m, err := s.Message(c, inRoom[2].ID); err != nil || m.Content != "r2" || m.RoomID != r.ID {
		t.Errorf("Message(%d) = %+v, %v", inRoom[2].ID, m, err)
	}
	if _, err := s.Message(c, g2.ID+100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Message(unknown) = %v, want ErrNotFound", err)
	}
	tests := []struct {
		name string
		read func() ([]store.Message, error)
		want string
	}{
		{"recent 3", func() ([]store.Message, error) { return s.RecentRoomMessages(c, "alice", r.ID, 3) }, "[r2 r3 r4]"},
		{"recent all", func() ([]store.Message, error) { return s.RecentRoomMessages(c, "alice", r.ID, 0) }, "[r0 r1 r2 r3 r4]"},
		{"before", func() ([]store.Message, error) { return s.RoomMessagesBefore(c, "alice", r.ID, inRoom[3].ID, 2) }, "[r1 r2]"},
		{"before, zero limit", func() ([]store.Message, error) { return s.RoomMessagesBefore(c, "alice", r.ID, inRoom[3].ID, 0) }, "[]"},
		{"after", func() ([]store.Message, error) { return s.RoomMessagesAfter(c, "alice", r.ID, inRoom[1].ID, 2) }, "[r2 r3]"},
		{"after the end", func() ([]store.Message, error) { return s.RoomMessagesAfter(c, "alice", r.ID, g2.ID, 10) }, "[]"},
		{"general by anyone", func() ([]store.Message, error) { return s.RecentRoomMessages(c, "", store.General, 0) }, "[g1 g2]"},
	}
	for _, tt := range tests {
		got, err := tt.read()
		if err != nil || got == nil || fmt.Sprint(contents(got)) != tt.want {
			t.Errorf("%s = %v, %v; want %s", tt.name, contents(got), err, tt.want)
		}
	}
	// A non-member neither reads nor writes a public room until joining.
	if _, err := s.RecentRoomMessages(c, "bob", r.ID, 0); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("non-member read = %v, want ErrForbidden", err)
	}
	if _, _, err := s.AddMessage(c, store.Message{RoomID: r.ID, Username: "bob", Content: "x"}); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("non-member write = %v, want ErrForbidden", err)
	}
	if _, _, err := s.AddMessage(c, store.Message{RoomID: 9999, Username: "bob", Content: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("write to unknown room = %v, want ErrNotFound", err)
	}
	if _, err := s.RecentRoomMessages(c, "bob", 9999, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("read of unknown room = %v, want ErrNotFound", err)
	}
	if err := s.JoinRoom(c, r.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.RecentRoomMessages(c, "bob", r.ID, 2); err != nil || len(got) != 2 {
		t.Errorf("member read = %v, %v", contents(got), err)
	}
	if m, _, err := s.AddMessage(c, store.Message{RoomID: r.ID, Username: "bob", Content: "hi", ClientID: "k"}); err != nil || m.RoomID != r.ID {
		t.Errorf("member write = %+v, %v", m, err)
	}
}

// testPrivateRoomStaysPrivate plays carol against alice and bob's direct
// room through every method that takes a reader: nothing of it comes back.
func testPrivateRoomStaysPrivate(t *testing.T, s store.Store) {
	c := ctx(t)
	users(t, s, "alice", "bob", "carol")
	d := mustDirect(t, s, "alice", "bob")
	secret := post(t, s, d.ID, "alice", "secret plans")
	post(t, s, d.ID, "bob", "more secret plans")
	attempts := map[string]error{
		"RecentRoomMessages": func() error { _, err := s.RecentRoomMessages(c, "carol", d.ID, 0); return err }(),
		"RoomMessagesBefore": func() error { _, err := s.RoomMessagesBefore(c, "carol", d.ID, secret.ID+10, 10); return err }(),
		"RoomMessagesAfter":  func() error { _, err := s.RoomMessagesAfter(c, "carol", d.ID, 0, 10); return err }(),
		"AddMessage": func() error {
			_, _, err := s.AddMessage(c, store.Message{RoomID: d.ID, Username: "carol", Content: "x"})
			return err
		}(),
		"MarkRead": func() error { _, err := s.MarkRead(c, "carol", d.ID, secret.ID); return err }(),
		"JoinRoom": s.JoinRoom(c, d.ID, "carol"),
	}
	for name, err := range attempts {
		if !errors.Is(err, store.ErrForbidden) {
			t.Errorf("carol %s on the direct room = %v, want ErrForbidden", name, err)
		}
	}
	// Changing it answers as for a message that does not exist.
	if _, _, err := s.EditMessage(c, secret.ID, "carol", "mine now", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("carol EditMessage = %v, want ErrNotFound", err)
	}
	if _, _, err := s.DeleteMessage(c, secret.ID, "carol", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("carol DeleteMessage = %v, want ErrNotFound", err)
	}
	if got, err := s.SearchMessages(c, "carol", "secret", 0, 100); err != nil || len(got) != 0 {
		t.Errorf("carol's search = %+v, %v; want nothing", got, err)
	}
	if got, _ := s.RecentMessages(c, 0); len(got) != 0 {
		t.Errorf("general's history shows %v", contents(got))
	}
	if m, _ := s.Message(c, secret.ID); m.Content != "secret plans" {
		t.Error("the attempts changed the message")
	}
	if got, err := s.RecentRoomMessages(c, "bob", d.ID, 0); err != nil || len(got) != 2 {
		t.Errorf("bob reads his own room: %v, %v", contents(got), err)
	}
}

func testEditMessage(t *testing.T, s store.Store) {
	c := ctx(t)
	m := post(t, s, 0, "alice", "helo")
	before := time.Now().Add(-time.Minute)
	got, applied, err := s.EditMessage(c, m.ID, "alice", "hello", "")
	if err != nil || !applied {
		t.Fatalf("EditMessage = %v, applied %v", err, applied)
	}
	if got.ID != m.ID || got.Content != "hello" || got.Edited.Before(before) || got.Deleted || !got.Time.Equal(m.Time) {
		t.Errorf("edited message = %+v; want content hello, Edited about now, Time unchanged", got)
	}
	hist, _ := s.RecentMessages(c, 0)
	if len(hist) != 1 || hist[0].Content != "hello" || !hist[0].Edited.Equal(got.Edited) {
		t.Errorf("history after edit = %+v", hist)
	}
	if _, _, err := s.EditMessage(c, m.ID, "bob", "bob was here", ""); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("bob editing alice's message = %v, want ErrForbidden", err)
	}
	if _, _, err := s.EditMessage(c, m.ID, "", "anon", ""); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("editing as no user = %v, want ErrForbidden", err)
	}
	if _, _, err := s.EditMessage(c, m.ID+100, "alice", "x", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("editing a missing message = %v, want ErrNotFound", err)
	}
	for _, empty := range []string{"", "  \n"} {
		if _, _, err := s.EditMessage(c, m.ID, "alice", empty, ""); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("editing to %q = %v, want ErrInvalid", empty, err)
		}
	}
	if again, _ := s.Message(c, m.ID); again.Content != "hello" {
		t.Errorf("refused edits changed the message: %+v", again)
	}
	// Without a client id every edit applies, as every send is stored.
	if _, applied, _ := s.EditMessage(c, m.ID, "alice", "hello", ""); !applied {
		t.Error("a second edit without a client id was not applied")
	}
}

func testEditIdempotent(t *testing.T, s store.Store) {
	c := ctx(t)
	m := post(t, s, 0, "alice", "v0")
	got, applied, err := s.EditMessage(c, m.ID, "alice", "v1", "e1")
	if err != nil || !applied || got.Content != "v1" {
		t.Fatalf("first edit = %+v, %v, applied %v", got, err, applied)
	}
	if _, applied, _ := s.EditMessage(c, m.ID, "alice", "v2", "e2"); !applied {
		t.Fatal("a new client id was not applied")
	}
	// e1 arrives again, late: applied once means it does not undo v2.
	got, applied, err = s.EditMessage(c, m.ID, "alice", "v1", "e1")
	if err != nil || applied || got.Content != "v2" {
		t.Errorf("resent edit = %+v, %v, applied %v; want v2 kept, not applied", got, err, applied)
	}
	// A client id is the user's own: bob's e1 is not alice's.
	b := post(t, s, 0, "bob", "b0")
	if _, applied, err := s.EditMessage(c, b.ID, "bob", "b1", "e1"); err != nil || !applied {
		t.Errorf("bob's e1 = %v, applied %v; want applied", err, applied)
	}
	// A refused edit does not use up its client id.
	if _, _, err := s.EditMessage(c, b.ID, "alice", "x", "e3"); !errors.Is(err, store.ErrForbidden) {
		t.Fatalf("alice editing bob's message = %v", err)
	}
	if _, applied, err := s.EditMessage(c, m.ID, "alice", "v3", "e3"); err != nil || !applied {
		t.Errorf("e3 after its refusal = %v, applied %v; want applied", err, applied)
	}
}

func testConcurrentEditResends(t *testing.T, s store.Store) {
	c := ctx(t)
	m := post(t, s, 0, "alice", "v0")
	const racers = 8
	var wg sync.WaitGroup
	applied := make([]bool, racers)
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() {
			_, applied[i], errs[i] = s.EditMessage(c, m.ID, "alice", "v1", "same")
		})
	}
	wg.Wait()
	n := 0
	for i := range racers {
		if errs[i] != nil {
			t.Errorf("racer %d: %v", i, errs[i])
		}
		if applied[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d racing resends of one edit applied, want 1", n)
	}
}

func testDeleteMessage(t *testing.T, s store.Store) {
	c := ctx(t)
	keep := post(t, s, 0, "alice", "keep this")
	m := post(t, s, 0, "alice", "regrettable words")
	if _, _, err := s.DeleteMessage(c, m.ID, "bob", ""); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("bob deleting alice's message = %v, want ErrForbidden", err)
	}
	got, applied, err := s.DeleteMessage(c, m.ID, "alice", "d1")
	if err != nil || !applied || !got.Deleted || got.Content != "" || got.ID != m.ID {
		t.Fatalf("DeleteMessage = %+v, %v, applied %v; want deleted, content blanked", got, err, applied)
	}
	hist, _ := s.RecentMessages(c, 0)
	if len(hist) != 2 || hist[0].ID != keep.ID || hist[0].Deleted || !hist[1].Deleted || hist[1].Content != "" {
		t.Errorf("history after delete = %+v; want the row kept, marked, blank", hist)
	}
	if after, _ := s.MessagesAfter(c, keep.ID, 10); len(after) != 1 || !after[0].Deleted {
		t.Errorf("MessagesAfter after delete = %+v", after)
	}
	if _, applied, err := s.DeleteMessage(c, m.ID, "alice", "d1"); err != nil || applied {
		t.Errorf("resent delete = %v, applied %v; want not applied", err, applied)
	}
	if _, applied, err := s.DeleteMessage(c, m.ID, "alice", ""); err != nil || applied {
		t.Errorf("second delete = %v, applied %v; want not applied", err, applied)
	}
	// A client id is one per change, whichever kind: an edit reusing the
	// delete's is its resend.
	if got, applied, err := s.EditMessage(c, m.ID, "alice", "back", "d1"); err != nil || applied || !got.Deleted {
		t.Errorf("edit with the delete's client id = %+v, %v, applied %v; want the deleted message, not applied", got, err, applied)
	}
	if _, _, err := s.DeleteMessage(c, keep.ID, "", ""); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("deleting as no user = %v, want ErrForbidden", err)
	}
	if _, _, err := s.EditMessage(c, m.ID, "alice", "back", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("editing a deleted message = %v, want ErrNotFound", err)
	}
	if found, _ := s.SearchMessages(c, "alice", "regrettable", 0, 10); len(found) != 0 {
		t.Errorf("search finds a deleted message: %+v", found)
	}
}

// changes describes messages as a replay shows them: each one's text, or
// "-" for a deleted one, and its room when not General.
func changes(ms []store.Message) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Content
		if m.Deleted {
			out[i] = "-"
		}
		if m.RoomID != store.General {
			out[i] += fmt.Sprint("@", m.RoomID)
		}
	}
	return "[" + strings.Join(out, " | ") + "]"
}

func testChangedSince(t *testing.T, s store.Store) {
	c := ctx(t)
	users(t, s, "alice", "bob")
	dm := mustDirect(t, s, "alice", "bob")
	post(t, s, 0, "alice", "never changed")
	early := post(t, s, 0, "alice", "early")
	typo := post(t, s, 0, "alice", "typo")
	regret := post(t, s, dm.ID, "alice", "regret")
	late := post(t, s, 0, "bob", "late")
	both := post(t, s, 0, "bob", "edited, then deleted")
	edit := func(m store.Message, text string) store.Message {
		t.Helper()
		got, _, err := s.EditMessage(c, m.ID, m.Username, text, "")
		if err != nil {
			t.Fatalf("EditMessage(%d): %v", m.ID, err)
		}
		return got
	}
	del := func(m store.Message) {
		t.Helper()
		if _, _, err := s.DeleteMessage(c, m.ID, m.Username, ""); err != nil {
			t.Fatalf("DeleteMessage(%d): %v", m.ID, err)
		}
	}
	edit(early, "early, edited")
	edit(both, "both, edited")
	// SQLite keeps milliseconds: the changes below come strictly later.
	time.Sleep(5 * time.Millisecond)
	mark := edit(typo, "fixed").Edited
	del(regret)
	edit(late, "late, edited")
	del(both) // edited before the mark, deleted after it
	// From here on, changes happen in id order, so that ties within a
	// millisecond sort the same.
	tests := []struct {
		name  string
		since time.Time
		limit int
		want  string
	}{
		{"every change, in order", time.Time{}, 10, "[early, edited | fixed | -@" + fmt.Sprint(dm.ID) + " | late, edited | -]"},
		{"at or after the mark, any room", mark, 10, "[fixed | -@" + fmt.Sprint(dm.ID) + " | late, edited | -]"},
		{"the newest two, oldest first", mark, 2, "[late, edited | -]"},
		{"the newest of all", time.Time{}, 1, "[-]"},
		{"nothing later", mark.Add(time.Hour), 10, "[]"},
		{"zero limit", time.Time{}, 0, "[]"},
	}
	for _, tt := range tests {
		got, err := s.ChangedSince(c, tt.since, tt.limit)
		if err != nil {
			t.Fatalf("%s: ChangedSince: %v", tt.name, err)
		}
		if g := changes(got); g != tt.want || got == nil {
			t.Errorf("%s: ChangedSince(%v, %d) = %s, want %s", tt.name, tt.since, tt.limit, g, tt.want)
		}
	}
	// As stored now: the edit's time, the row's id and room.
	got, _ := s.ChangedSince(c, mark, 1_000)
	if len(got) != 4 || got[0].ID != typo.ID || !got[0].Edited.Equal(mark) || got[1].ID != regret.ID || got[1].RoomID != dm.ID || got[1].Content != "" {
		t.Errorf("ChangedSince(mark) = %+v", got)
	}
}

func testReadMarkers(t *testing.T, s store.Store) {
	c := ctx(t)
	r := mustRoom(t, s, "marks", "alice")
	if got, err := s.LastRead(c, "alice", r.ID); err != nil || got != 0 {
		t.Errorf("LastRead with no marker = %d, %v; want 0", got, err)
	}
	steps := []struct {
		mark, want int64
	}{{5, 5}, {9, 9}, {7, 9}, {0, 9}, {-3, 9}, {12, 12}}
	for _, st := range steps {
		got, err := s.MarkRead(c, "alice", r.ID, st.mark)
		if err != nil || got != st.want {
			t.Errorf("MarkRead(%d) = %d, %v; want %d (never backwards)", st.mark, got, err, st.want)
		}
	}
	if got, _ := s.LastRead(c, "alice", r.ID); got != 12 {
		t.Errorf("LastRead = %d, want 12", got)
	}
	if got, _ := s.LastRead(c, "bob", r.ID); got != 0 {
		t.Errorf("bob's LastRead = %d, want 0 (markers are per user)", got)
	}
	if got, err := s.MarkRead(c, "bob", store.General, 4); err != nil || got != 4 {
		t.Errorf("MarkRead in general = %d, %v", got, err)
	}
	if _, err := s.MarkRead(c, "bob", r.ID, 4); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("MarkRead by a non-member = %v, want ErrForbidden", err)
	}
	if _, err := s.MarkRead(c, "bob", 9999, 4); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MarkRead in an unknown room = %v, want ErrNotFound", err)
	}
	if _, err := s.MarkRead(c, "", store.General, 4); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("MarkRead by no user = %v, want ErrForbidden", err)
	}
	if rs, _ := summary(t, s, "alice", r.ID); rs.LastRead != 12 {
		t.Errorf("ListRooms LastRead = %d, want 12", rs.LastRead)
	}
}

// testUnreadCounts: unread is the room's messages after the marker that
// are neither deleted nor the user's own; joining starts at the newest.
func testUnreadCounts(t *testing.T, s store.Store) {
	c := ctx(t)
	r := mustRoom(t, s, "news", "alice")
	post(t, s, r.ID, "alice", "before bob")
	post(t, s, r.ID, "alice", "also before bob")
	if got := unread(t, s, "bob", r.ID); got != 0 {
		t.Errorf("non-member unread = %d, want 0", got)
	}
	if err := s.JoinRoom(c, r.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := unread(t, s, "bob", r.ID); got != 0 {
		t.Errorf("unread right after joining = %d, want 0", got)
	}
	var ms []store.Message
	for i := range 3 {
		ms = append(ms, post(t, s, r.ID, "alice", fmt.Sprint("news ", i)))
	}
	post(t, s, r.ID, "bob", "bob's own")
	if got := unread(t, s, "bob", r.ID); got != 3 {
		t.Errorf("bob's unread = %d, want 3 (his own message does not count)", got)
	}
	if got := unread(t, s, "alice", r.ID); got != 1 {
		t.Errorf("alice's unread = %d, want 1 (bob's)", got)
	}
	if _, _, err := s.DeleteMessage(c, ms[2].ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if got := unread(t, s, "bob", r.ID); got != 2 {
		t.Errorf("unread after a delete = %d, want 2", got)
	}
	if _, err := s.MarkRead(c, "bob", r.ID, ms[0].ID); err != nil {
		t.Fatal(err)
	}
	if got := unread(t, s, "bob", r.ID); got != 1 {
		t.Errorf("unread after marking the first read = %d, want 1", got)
	}
	// General: no marker means everything of others is unread.
	post(t, s, 0, "alice", "g1")
	post(t, s, 0, "carol", "g2")
	if got := unread(t, s, "bob", store.General); got != 2 {
		t.Errorf("bob's general unread = %d, want 2", got)
	}
	if got := unread(t, s, "", store.General); got != 0 {
		t.Errorf("unread for no user = %d, want 0", got)
	}
	// A direct room starts with everything unread.
	users(t, s, "alice", "bob")
	d := mustDirect(t, s, "alice", "bob")
	post(t, s, d.ID, "alice", "psst")
	if got := unread(t, s, "bob", d.ID); got != 1 {
		t.Errorf("direct unread = %d, want 1", got)
	}
	// Leaving and joining again skips what was said meanwhile.
	if err := s.LeaveRoom(c, r.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	post(t, s, r.ID, "alice", "while bob was away")
	if err := s.JoinRoom(c, r.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := unread(t, s, "bob", r.ID); got != 0 {
		t.Errorf("unread after rejoining = %d, want 0", got)
	}
}

func testSearch(t *testing.T, s store.Store) {
	c := ctx(t)
	var ms []store.Message
	for i, text := range []string{
		"The quick brown fox",
		"a lazy dog sleeps",
		"quick thinking, QUICK action",
		"Le café est fermé",
		"fox and dog are friends",
		"nothing to see",
	} {
		ms = append(ms, post(t, s, 0, fmt.Sprint("u", i%2), text))
	}
	ids := func(found []store.Message) []int64 {
		out := []int64{}
		for _, m := range found {
			out = append(out, m.ID)
		}
		return out
	}
	tests := []struct {
		name   string
		query  string
		before int64
		limit  int
		want   []int64
	}{
		{"one word, newest first", "fox", 0, 10, []int64{ms[4].ID, ms[0].ID}},
		{"any case", "QuIcK", 0, 10, []int64{ms[2].ID, ms[0].ID}},
		{"every word required", "fox dog", 0, 10, []int64{ms[4].ID}},
		{"word order free", "dog fox", 0, 10, []int64{ms[4].ID}},
		{"limit", "dog", 0, 1, []int64{ms[4].ID}},
		{"next page", "dog", ms[4].ID, 1, []int64{ms[1].ID}},
		{"past the last page", "dog", ms[1].ID, 10, []int64{}},
		{"accented", "café", 0, 10, []int64{ms[3].ID}},
		{"punctuation around words", "quick, (fox)!", 0, 10, []int64{ms[0].ID}},
		{"no match", "elephant", 0, 10, []int64{}},
		{"zero limit", "fox", 0, 0, []int64{}},
		{"whole words, not parts", "qui", 0, 10, []int64{}},
	}
	for _, tt := range tests {
		found, err := s.SearchMessages(c, "reader", tt.query, tt.before, tt.limit)
		if err != nil {
			t.Errorf("%s: SearchMessages(%q): %v", tt.name, tt.query, err)
			continue
		}
		if found == nil || !slices.Equal(ids(found), tt.want) {
			t.Errorf("%s: SearchMessages(%q, %d, %d) = %v, want %v", tt.name, tt.query, tt.before, tt.limit, ids(found), tt.want)
		}
	}
	found, _ := s.SearchMessages(c, "reader", "fox", 0, 1)
	if len(found) == 1 && (found[0].Content != "fox and dog are friends" || found[0].RoomID != store.General || found[0].Username != "u0") {
		t.Errorf("search result = %+v; want the whole message", found[0])
	}
	// An edit is searched by its new words only.
	if _, _, err := s.EditMessage(c, ms[5].ID, "u1", "now there is a zebra", ""); err != nil {
		t.Fatal(err)
	}
	if found, _ := s.SearchMessages(c, "reader", "zebra", 0, 10); !slices.Equal(ids(found), []int64{ms[5].ID}) || found[0].Edited.IsZero() {
		t.Errorf("search for an edit's new word = %+v", found)
	}
	if found, _ := s.SearchMessages(c, "reader", "nothing", 0, 10); len(found) != 0 {
		t.Errorf("search finds an edit's old word: %+v", found)
	}
}

// testSearchPermissions: each user finds general's messages and those of
// the rooms they are in, never others' direct rooms nor rooms they have not
// joined or have left.
func testSearchPermissions(t *testing.T, s store.Store) {
	c := ctx(t)
	users(t, s, "alice", "bob", "carol")
	pub := mustRoom(t, s, "club", "alice")
	dm := mustDirect(t, s, "alice", "carol")
	inGeneral := post(t, s, 0, "bob", "needle in general")
	inPub := post(t, s, pub.ID, "alice", "needle in the club")
	inDM := post(t, s, dm.ID, "carol", "needle between alice and carol")
	found := func(user string) []int64 {
		t.Helper()
		ms, err := s.SearchMessages(c, user, "needle", 0, 100)
		if err != nil {
			t.Fatalf("SearchMessages(%s): %v", user, err)
		}
		out := []int64{}
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	tests := []struct {
		user string
		want []int64
	}{
		{"alice", []int64{inDM.ID, inPub.ID, inGeneral.ID}},
		{"carol", []int64{inDM.ID, inGeneral.ID}},
		{"bob", []int64{inGeneral.ID}},
		{"", []int64{inGeneral.ID}},
		{"mallory", []int64{inGeneral.ID}},
	}
	for _, tt := range tests {
		if got := found(tt.user); !slices.Equal(got, tt.want) {
			t.Errorf("%q finds %v, want %v", tt.user, got, tt.want)
		}
	}
	if err := s.JoinRoom(c, pub.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := found("bob"); !slices.Equal(got, []int64{inPub.ID, inGeneral.ID}) {
		t.Errorf("bob after joining finds %v", got)
	}
	if err := s.LeaveRoom(c, pub.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := found("bob"); !slices.Equal(got, []int64{inGeneral.ID}) {
		t.Errorf("bob after leaving finds %v", got)
	}
}

// testSearchAnyString: whatever a client types, the answer is results or
// nothing, never an error (only an overlong query is refused, by rule).
func testSearchAnyString(t *testing.T, s store.Store) {
	c := ctx(t)
	post(t, s, 0, "alice", `hello world "quoted" and AND or OR not NOT near NEAR`)
	queries := []string{
		"", " ", "\t\n", `"`, `""`, `"""`, `'`, `''`, `\`, `\\`, `*`, `hello*`, `*hello`,
		`AND`, `OR`, `NOT`, `hello AND`, `OR world`, `NOT hello`, `hello NOT`, `-hello`, `+hello`,
		`NEAR(hello world)`, `NEAR(hello world, 2)`, `content:hello`, `{content}: hello`, `^hello`,
		`(`, `)`, `(hello`, `hello)`, `hello"world`, `"hello world`, `!@#$%^&*()`, `%`, `_`, `%_%`,
		`'; DROP TABLE chat_history; --`, `hello & world | !x`, `<->`, `hello <-> world`, `:*`, `a:*`,
		"\x00", "hello\x00world", "\xff\xfe", "héllo", "👋", "̈́", "日本語", strings.Repeat("a", 900),
		strings.Repeat("hello ", 160), strings.Repeat(`" OR `, 190),
	}
	// And strings made at random from the characters search syntaxes use.
	rng := rand.New(rand.NewPCG(11, 11))
	alphabet := []string{`"`, `'`, `*`, `(`, `)`, `:`, `^`, `-`, `+`, `&`, `|`, `!`, `<`, `>`, `{`, `}`,
		`\`, "\x00", "\xff", " ", "AND", "OR", "NOT", "NEAR", "hello", "é", "👋", "\u0301", "%", "_"}
	for range 300 {
		var b strings.Builder
		for range 1 + rng.IntN(12) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		queries = append(queries, b.String())
	}
	for _, q := range queries {
		got, err := s.SearchMessages(c, "alice", q, 0, 10)
		if err != nil || got == nil {
			t.Errorf("SearchMessages(%.40q) = %v, %v; want results or empty", q, got, err)
		}
	}
	for _, q := range []string{"hello", `"hello"`, `hello*`, `NOT hello`, `hello AND world`, `(hello)`} {
		if got, _ := s.SearchMessages(c, "alice", q, 0, 10); len(got) != 1 {
			t.Errorf("SearchMessages(%q) found %d, want the message (syntax is read as words)", q, len(got))
		}
	}
	if _, err := s.SearchMessages(c, "alice", strings.Repeat("a", store.MaxSearchQuery+1), 0, 10); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("overlong query = %v, want ErrInvalid", err)
	}
}

func testMemberRooms(t *testing.T, s store.Store) {
	c := ctx(t)
	users(t, s, "alice", "bob", "carol")
	lobby := mustRoom(t, s, "lobby", "alice")
	other := mustRoom(t, s, "other", "carol")
	if err := s.JoinRoom(c, lobby.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := s.JoinRoom(c, store.General, "bob"); err != nil {
		t.Fatal(err)
	}
	dm, err := s.DirectRoom(c, "bob", "carol")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user string
		want []int64
	}{
		{"bob", []int64{lobby.ID, dm.ID}},
		{"alice", []int64{lobby.ID}},
		{"carol", []int64{other.ID, dm.ID}},
		{"nobody", []int64{}},
		{"", []int64{}},
	} {
		got, err := s.MemberRooms(c, tc.user)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("MemberRooms(%q) = %v, %v; want %v (general never listed)", tc.user, got, err, tc.want)
		}
	}
	if err := s.LeaveRoom(c, lobby.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.MemberRooms(c, "bob"); fmt.Sprint(got) != fmt.Sprint([]int64{dm.ID}) {
		t.Errorf("MemberRooms(bob) after leaving lobby = %v, want [%d]", got, dm.ID)
	}
}
