package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/chatd/chat/store"
)

var _ store.Conversations = (*Store)(nil)

// nowMillis is the SQL for the current time in Unix milliseconds, the unit
// of every time column.
const nowMillis = `CAST(unixepoch('subsec') * 1000 AS INTEGER)`

// querier is what both *sql.DB and *sql.Tx offer. Inside a transaction
// every query must go through the *sql.Tx: an in-memory store has one
// connection, which the transaction holds.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// roomAccess reads room's kind and whether username is a member of it
// (always true in General), or returns ErrNotFound.
func roomAccess(ctx context.Context, q querier, room int64, username string) (store.RoomAccess, error) {
	a := store.RoomAccess{Room: room}
	err := q.QueryRowContext(ctx, `
		SELECT kind, id = 1 OR EXISTS (
			SELECT 1 FROM chat_room_members WHERE room_id = ?1 AND username = ?2)
		FROM chat_rooms WHERE id = ?1`, room, username).Scan(&a.Kind, &a.Member)
	if errors.Is(err, sql.ErrNoRows) {
		return store.RoomAccess{}, store.ErrNotFound
	}
	if err != nil {
		return store.RoomAccess{}, fmt.Errorf("sqlite: room access: %w", err)
	}
	return a, nil
}

// checkMember returns nil when username may read and write room,
// ErrForbidden when not, ErrNotFound when there is no such room.
func checkMember(ctx context.Context, q querier, room int64, username string) error {
	a, err := roomAccess(ctx, q, room, username)
	if err != nil {
		return err
	}
	return a.CheckMember()
}

const roomColumns = `id, name, kind, created_by, created_at`

func scanRoom(row interface{ Scan(...any) error }) (store.Room, error) {
	var (
		r  store.Room
		ms int64
	)
	err := row.Scan(&r.ID, &r.Name, &r.Kind, &r.CreatedBy, &ms)
	r.Created = time.UnixMilli(ms).UTC()
	return r, err
}

// CreateRoom implements store.Rooms.
func (s *Store) CreateRoom(ctx context.Context, name, creator string) (store.Room, error) {
	name, err := store.ValidateNewRoom(name, creator)
	if err != nil {
		return store.Room{}, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Room{}, fmt.Errorf("sqlite: create room: %w", err)
	}
	defer tx.Rollback()
	r, err := scanRoom(tx.QueryRowContext(ctx, `
		INSERT INTO chat_rooms (name, name_key, kind, created_by) VALUES (?, ?, 'public', ?)
		RETURNING `+roomColumns, name, store.RoomNameKey(name), creator))
	if isUniqueViolation(err) {
		return store.Room{}, store.ErrConflict
	}
	if err != nil {
		return store.Room{}, fmt.Errorf("sqlite: create room: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO chat_room_members (room_id, username) VALUES (?, ?)`, r.ID, creator); err != nil {
		return store.Room{}, fmt.Errorf("sqlite: create room: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.Room{}, fmt.Errorf("sqlite: create room: %w", err)
	}
	return r, nil
}

// Room implements store.Rooms.
func (s *Store) Room(ctx context.Context, id int64) (store.Room, error) {
	r, err := scanRoom(s.db.QueryRowContext(ctx, `SELECT `+roomColumns+` FROM chat_rooms WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Room{}, store.ErrNotFound
	}
	if err != nil {
		return store.Room{}, fmt.Errorf("sqlite: room: %w", err)
	}
	return r, nil
}

// ListRooms implements store.Rooms. Each readable room's unread count is a
// correlated count bounded by UnreadCap, on the (room_id, id) index.
func (s *Store) ListRooms(ctx context.Context, username string) ([]store.RoomSummary, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT r.id, r.name, r.kind, r.created_by, r.created_at,
			CASE WHEN r.kind = 'direct' THEN
				CASE WHEN r.dm_a = ?1 THEN r.dm_b ELSE r.dm_a END
			ELSE '' END,
			r.id = 1 OR m.username IS NOT NULL,
			coalesce(k.last_read, 0),
			CASE WHEN (r.id = 1 OR m.username IS NOT NULL) AND ?1 <> '' THEN (
				SELECT count(*) FROM (
					SELECT 1 FROM chat_history h
					WHERE h.room_id = r.id AND h.id > coalesce(k.last_read, 0)
						AND h.deleted_at IS NULL AND h.username IS NOT ?1
					LIMIT ?2))
			ELSE 0 END
		FROM chat_rooms r
		LEFT JOIN chat_room_members m ON m.room_id = r.id AND m.username = ?1
		LEFT JOIN chat_read_markers k ON k.room_id = r.id AND k.username = ?1
		WHERE r.kind = 'public' OR m.username IS NOT NULL
		ORDER BY r.id`, username, store.UnreadCap)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list rooms: %w", err)
	}
	defer rows.Close()
	list := []store.RoomSummary{}
	for rows.Next() {
		var (
			rs store.RoomSummary
			ms int64
		)
		if err := rows.Scan(&rs.ID, &rs.Name, &rs.Kind, &rs.CreatedBy, &ms,
			&rs.Peer, &rs.Member, &rs.LastRead, &rs.Unread); err != nil {
			return nil, fmt.Errorf("sqlite: list rooms: %w", err)
		}
		rs.Created = time.UnixMilli(ms).UTC()
		list = append(list, rs)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list rooms: %w", err)
	}
	return list, nil
}

// JoinRoom implements store.Rooms.
func (s *Store) JoinRoom(ctx context.Context, room int64, username string) error {
	if username == "" {
		return store.ErrForbidden
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: join room: %w", err)
	}
	defer tx.Rollback()
	a, err := roomAccess(ctx, tx, room, username)
	if err != nil {
		return err
	}
	if join, err := a.Join(); !join {
		return err // nil for General or a room they are in
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO chat_room_members (room_id, username) VALUES (?, ?)`, room, username); err != nil {
		return fmt.Errorf("sqlite: join room: %w", err)
	}
	// What was said before joining is not unread.
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO chat_read_markers (username, room_id, last_read)
		VALUES (?2, ?1, (SELECT coalesce(max(id), 0) FROM chat_history WHERE room_id = ?1))
		ON CONFLICT (username, room_id) DO UPDATE
			SET last_read = max(last_read, excluded.last_read)`, room, username); err != nil {
		return fmt.Errorf("sqlite: join room: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: join room: %w", err)
	}
	return nil
}

// LeaveRoom implements store.Rooms.
func (s *Store) LeaveRoom(ctx context.Context, room int64, username string) error {
	a, err := roomAccess(ctx, s.db, room, username)
	if err != nil {
		return err
	}
	if err := a.Leave(); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx,
		`DELETE FROM chat_room_members WHERE room_id = ? AND username = ?`, room, username); err != nil {
		return fmt.Errorf("sqlite: leave room: %w", err)
	}
	return nil
}

// IsMember implements store.Rooms.
func (s *Store) IsMember(ctx context.Context, room int64, username string) (bool, error) {
	a, err := roomAccess(ctx, s.db, room, username)
	return a.Member, err
}

// MemberRooms implements store.Rooms.
func (s *Store) MemberRooms(ctx context.Context, username string) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT room_id FROM chat_room_members WHERE username = ? AND room_id <> 1 ORDER BY room_id`, username)
	if err != nil {
		return nil, fmt.Errorf("sqlite: member rooms: %w", err)
	}
	defer rows.Close()
	ids := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: member rooms: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: member rooms: %w", err)
	}
	return ids, nil
}

// Members implements store.Rooms.
func (s *Store) Members(ctx context.Context, room int64) ([]string, error) {
	if _, err := roomAccess(ctx, s.db, room, ""); err != nil {
		return nil, err
	}
	query := `SELECT username FROM chat_room_members WHERE room_id = ? ORDER BY joined_at, rowid`
	args := []any{room}
	if room == store.General {
		query, args = `SELECT username FROM user_table ORDER BY username`, nil
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: members: %w", err)
	}
	defer rows.Close()
	names := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("sqlite: members: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: members: %w", err)
	}
	return names, nil
}

// DirectRoom implements store.Rooms. Transactions begin IMMEDIATE (see
// Open), so two calls for one pair run one after the other and the second
// finds the first one's room.
func (s *Store) DirectRoom(ctx context.Context, a, b string) (store.Room, error) {
	lo, hi, err := store.DirectPair(a, b)
	if err != nil {
		return store.Room{}, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Room{}, fmt.Errorf("sqlite: direct room: %w", err)
	}
	defer tx.Rollback()
	var users int
	if err := tx.QueryRowContext(ctx,
		`SELECT count(*) FROM user_table WHERE username IN (?, ?)`, lo, hi).Scan(&users); err != nil {
		return store.Room{}, fmt.Errorf("sqlite: direct room: %w", err)
	}
	if users != 2 {
		return store.Room{}, store.ErrNotFound
	}
	r, err := scanRoom(tx.QueryRowContext(ctx, `
		INSERT INTO chat_rooms (name, kind, created_by, dm_a, dm_b) VALUES ('', 'direct', ?, ?, ?)
		ON CONFLICT (dm_a, dm_b) WHERE kind = 'direct' DO NOTHING
		RETURNING `+roomColumns, a, lo, hi))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		r, err = scanRoom(tx.QueryRowContext(ctx, `SELECT `+roomColumns+` FROM chat_rooms
			WHERE kind = 'direct' AND dm_a = ? AND dm_b = ?`, lo, hi))
		if err != nil {
			return store.Room{}, fmt.Errorf("sqlite: direct room: %w", err)
		}
		return r, nil
	case err != nil:
		return store.Room{}, fmt.Errorf("sqlite: direct room: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO chat_room_members (room_id, username) VALUES (?1, ?2), (?1, ?3)`, r.ID, a, b); err != nil {
		return store.Room{}, fmt.Errorf("sqlite: direct room: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.Room{}, fmt.Errorf("sqlite: direct room: %w", err)
	}
	return r, nil
}

// MarkRead implements store.ReadMarkers.
func (s *Store) MarkRead(ctx context.Context, username string, room, messageID int64) (int64, error) {
	if username == "" {
		return 0, store.ErrForbidden
	}
	if err := checkMember(ctx, s.db, room, username); err != nil {
		return 0, err
	}
	var last int64
	err := s.db.QueryRowContext(ctx, `
		INSERT INTO chat_read_markers (username, room_id, last_read) VALUES (?, ?, ?)
		ON CONFLICT (username, room_id) DO UPDATE SET last_read = max(last_read, excluded.last_read)
		RETURNING last_read`, username, room, max(messageID, 0)).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("sqlite: mark read: %w", err)
	}
	return last, nil
}

// LastRead implements store.ReadMarkers.
func (s *Store) LastRead(ctx context.Context, username string, room int64) (int64, error) {
	var last int64
	err := s.db.QueryRowContext(ctx, `
		SELECT coalesce((SELECT last_read FROM chat_read_markers WHERE username = ? AND room_id = ?), 0)`,
		username, room).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("sqlite: last read: %w", err)
	}
	return last, nil
}

// RecentRoomMessages implements store.RoomMessages.
func (s *Store) RecentRoomMessages(ctx context.Context, reader string, room int64, limit int) ([]store.Message, error) {
	if err := checkMember(ctx, s.db, room, reader); err != nil {
		return nil, err
	}
	return s.recent(ctx, room, limit)
}

// RoomMessagesBefore implements store.RoomMessages.
func (s *Store) RoomMessagesBefore(ctx context.Context, reader string, room, before int64, limit int) ([]store.Message, error) {
	if err := checkMember(ctx, s.db, room, reader); err != nil {
		return nil, err
	}
	return s.before(ctx, room, before, limit)
}

// RoomMessagesAfter implements store.RoomMessages.
func (s *Store) RoomMessagesAfter(ctx context.Context, reader string, room, after int64, limit int) ([]store.Message, error) {
	if err := checkMember(ctx, s.db, room, reader); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return []store.Message{}, nil
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+messageColumns+` FROM chat_history
		WHERE room_id = ? AND id > ? ORDER BY id LIMIT ?`, room, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: room messages after: %w", err)
	}
	return scanMessages(rows)
}

// Message implements store.RoomMessages.
func (s *Store) Message(ctx context.Context, id int64) (store.Message, error) {
	return messageByID(ctx, s.db, id)
}

func messageByID(ctx context.Context, q querier, id int64) (store.Message, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+messageColumns+` FROM chat_history WHERE id = ?`, id)
	if err != nil {
		return store.Message{}, fmt.Errorf("sqlite: message: %w", err)
	}
	msgs, err := scanMessages(rows)
	if err != nil {
		return store.Message{}, err
	}
	if len(msgs) == 0 {
		return store.Message{}, store.ErrNotFound
	}
	return msgs[0], nil
}

// LatestMessageID implements store.RoomMessages.
func (s *Store) LatestMessageID(ctx context.Context) (int64, error) {
	var id int64
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM chat_history`).Scan(&id); err != nil {
		return 0, fmt.Errorf("sqlite: latest message id: %w", err)
	}
	return id, nil
}

// ChangedSince implements store.RoomMessages. Each side of the OR walks
// its partial index (migration 0004); times are Unix milliseconds, so since
// counts from the start of its millisecond.
func (s *Store) ChangedSince(ctx context.Context, since time.Time, limit int) ([]store.Message, error) {
	if limit <= 0 {
		return []store.Message{}, nil
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+messageColumns+` FROM (
			SELECT `+messageColumns+`,
				max(coalesce(edited_at, 0), coalesce(deleted_at, 0)) AS changed_at
			FROM chat_history WHERE edited_at >= ?1 OR deleted_at >= ?1
			ORDER BY changed_at DESC, id DESC LIMIT ?2
		) ORDER BY changed_at, id`, since.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: changed since: %w", err)
	}
	return scanMessages(rows)
}

// EditMessage implements store.RoomMessages.
func (s *Store) EditMessage(ctx context.Context, id int64, username, content, clientID string) (store.Message, bool, error) {
	c := store.MessageChange{ID: id, Username: username, ClientID: clientID, Content: content}
	return s.change(ctx, c, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`UPDATE chat_history SET content = ?, edited_at = `+nowMillis+` WHERE id = ?`, content, id)
		return err
	})
}

// DeleteMessage implements store.RoomMessages. The content is blanked
// rather than kept, so the text is gone from the file and the FTS index
// (the update trigger removes its words).
func (s *Store) DeleteMessage(ctx context.Context, id int64, username, clientID string) (store.Message, bool, error) {
	c := store.MessageChange{ID: id, Username: username, ClientID: clientID, Delete: true}
	return s.change(ctx, c, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`UPDATE chat_history SET content = '', deleted_at = `+nowMillis+` WHERE id = ?`, id)
		return err
	})
}

// change makes c in one transaction, calling write when c.Check allows
// it. The transaction begins IMMEDIATE: changes are serialised, so a
// resent change's client id is always found.
func (s *Store) change(ctx context.Context, c store.MessageChange, write func(tx *sql.Tx) error) (store.Message, bool, error) {
	if err := c.Validate(); err != nil {
		return store.Message{}, false, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Message{}, false, fmt.Errorf("sqlite: change message: %w", err)
	}
	defer tx.Rollback()
	if c.ClientID != "" {
		var prev int64
		err := tx.QueryRowContext(ctx,
			`SELECT message_id FROM chat_message_changes WHERE username = ? AND client_id = ?`,
			c.Username, c.ClientID).Scan(&prev)
		switch {
		case err == nil:
			m, err := messageByID(ctx, tx, prev)
			return m, false, err
		case !errors.Is(err, sql.ErrNoRows):
			return store.Message{}, false, fmt.Errorf("sqlite: change message: %w", err)
		}
	}
	m, err := messageByID(ctx, tx, c.ID)
	if err != nil {
		return store.Message{}, false, err
	}
	applied, err := c.Check(m, func(room int64) bool { return checkMember(ctx, tx, room, c.Username) == nil })
	if err != nil {
		return store.Message{}, false, err
	}
	if applied {
		if err := write(tx); err != nil {
			return store.Message{}, false, fmt.Errorf("sqlite: change message: %w", err)
		}
	}
	if c.ClientID != "" {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO chat_message_changes (username, client_id, message_id) VALUES (?, ?, ?)`,
			c.Username, c.ClientID, c.ID); err != nil {
			return store.Message{}, false, fmt.Errorf("sqlite: change message: %w", err)
		}
	}
	if m, err = messageByID(ctx, tx, c.ID); err != nil {
		return store.Message{}, false, err
	}
	if err := tx.Commit(); err != nil {
		return store.Message{}, false, fmt.Errorf("sqlite: change message: %w", err)
	}
	return m, applied, nil
}

// SearchMessages implements store.RoomMessages. FTS5 walks its matches in
// descending rowid (= id) order, so a page stops after limit readable
// matches instead of sorting them all.
func (s *Store) SearchMessages(ctx context.Context, username, query string, before int64, limit int) ([]store.Message, error) {
	if err := store.ValidateSearchQuery(query); err != nil {
		return nil, err
	}
	match := ftsQuery(query)
	if match == "" || limit <= 0 {
		return []store.Message{}, nil
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+prefixed("h.", messageColumns)+`
		FROM chat_history_fts f JOIN chat_history h ON h.id = f.rowid
		WHERE chat_history_fts MATCH ?2 AND f.rowid < ?3
			AND h.deleted_at IS NULL
			AND (h.room_id = 1 OR h.room_id IN (
				SELECT room_id FROM chat_room_members WHERE username = ?1 AND ?1 <> ''))
		ORDER BY f.rowid DESC LIMIT ?4`, username, match, before, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: search: %w", err)
	}
	return scanMessages(rows)
}

// ftsQuery turns any text into an FTS5 query that cannot be a syntax
// error: its words (runs of letters, digits and marks; everything else,
// quotes and operators included, separates words), each one a quoted
// string, all required. Text with no word gives "", which finds nothing.
func ftsQuery(text string) string {
	words := strings.FieldsFunc(strings.ToValidUTF8(text, " "), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r) && !unicode.IsMark(r)
	})
	var b strings.Builder
	for _, w := range words {
		if !strings.ContainsFunc(w, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }) {
			continue // marks alone make no token
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		// A word holds no '"', so quoting it needs no escaping.
		b.WriteByte('"')
		b.WriteString(w)
		b.WriteByte('"')
	}
	return b.String()
}

// prefixed qualifies each of the comma-separated columns with p.
func prefixed(p, columns string) string {
	cols := strings.Split(columns, ", ")
	for i, c := range cols {
		cols[i] = p + c
	}
	return strings.Join(cols, ", ")
}
