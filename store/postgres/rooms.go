package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chatd/chat/store"
)

var _ store.Conversations = (*Store)(nil)

// querier is what both *sql.DB and *sql.Tx offer, so that helpers run
// inside or outside a transaction.
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
			SELECT 1 FROM chat_room_members WHERE room_id = $1 AND username = $2)
		FROM chat_rooms WHERE id = $1`, room, username).Scan(&a.Kind, &a.Member)
	if errors.Is(err, sql.ErrNoRows) {
		return store.RoomAccess{}, store.ErrNotFound
	}
	if err != nil {
		return store.RoomAccess{}, fmt.Errorf("postgres: room access: %w", err)
	}
	return a, nil
}

// checkMember returns nil when username may read and write room,
// ErrForbidden when not, ErrNotFound when there is no such room.
func (s *Store) checkMember(ctx context.Context, q querier, room int64, username string) error {
	a, err := roomAccess(ctx, q, room, username)
	if err != nil {
		return err
	}
	return a.CheckMember()
}

const roomColumns = `id, name, kind, created_by, created_at`

func scanRoom(row interface{ Scan(...any) error }) (store.Room, error) {
	var r store.Room
	err := row.Scan(&r.ID, &r.Name, &r.Kind, &r.CreatedBy, &r.Created)
	r.Created = r.Created.UTC()
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
		return store.Room{}, fmt.Errorf("postgres: create room: %w", err)
	}
	defer tx.Rollback()
	r, err := scanRoom(tx.QueryRowContext(ctx, `
		INSERT INTO chat_rooms (name, name_key, kind, created_by) VALUES ($1, $2, 'public', $3)
		RETURNING `+roomColumns, name, store.RoomNameKey(name), creator))
	if isUniqueViolation(err) {
		return store.Room{}, store.ErrConflict
	}
	if err != nil {
		return store.Room{}, fmt.Errorf("postgres: create room: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO chat_room_members (room_id, username) VALUES ($1, $2)`, r.ID, creator); err != nil {
		return store.Room{}, fmt.Errorf("postgres: create room: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.Room{}, fmt.Errorf("postgres: create room: %w", err)
	}
	return r, nil
}

// Room implements store.Rooms.
func (s *Store) Room(ctx context.Context, id int64) (store.Room, error) {
	r, err := scanRoom(s.db.QueryRowContext(ctx, `SELECT `+roomColumns+` FROM chat_rooms WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Room{}, store.ErrNotFound
	}
	if err != nil {
		return store.Room{}, fmt.Errorf("postgres: room: %w", err)
	}
	return r, nil
}

// ListRooms implements store.Rooms. One query: each readable room's unread
// count is a LATERAL count bounded by UnreadCap, on the (room_id, id) index.
func (s *Store) ListRooms(ctx context.Context, username string) ([]store.RoomSummary, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT r.id, r.name, r.kind, r.created_by, r.created_at,
			CASE WHEN r.kind = 'direct' THEN
				CASE WHEN r.dm_a = $1 THEN r.dm_b ELSE r.dm_a END
			ELSE '' END,
			r.id = 1 OR m.username IS NOT NULL,
			coalesce(k.last_read, 0),
			u.n
		FROM chat_rooms r
		LEFT JOIN chat_room_members m ON m.room_id = r.id AND m.username = $1
		LEFT JOIN chat_read_markers k ON k.room_id = r.id AND k.username = $1
		CROSS JOIN LATERAL (
			SELECT count(*) AS n FROM (
				SELECT 1 FROM chat_history h
				WHERE (r.id = 1 OR m.username IS NOT NULL) AND $1 <> ''
					AND h.room_id = r.id AND h.id > coalesce(k.last_read, 0)
					AND h.deleted_at IS NULL AND h.username IS DISTINCT FROM $1
				LIMIT $2
			) AS unread
		) AS u
		WHERE r.kind = 'public' OR m.username IS NOT NULL
		ORDER BY r.id`, username, store.UnreadCap)
	if err != nil {
		return nil, fmt.Errorf("postgres: list rooms: %w", err)
	}
	defer rows.Close()
	list := []store.RoomSummary{}
	for rows.Next() {
		var rs store.RoomSummary
		if err := rows.Scan(&rs.ID, &rs.Name, &rs.Kind, &rs.CreatedBy, &rs.Created,
			&rs.Peer, &rs.Member, &rs.LastRead, &rs.Unread); err != nil {
			return nil, fmt.Errorf("postgres: list rooms: %w", err)
		}
		rs.Created = rs.Created.UTC()
		list = append(list, rs)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list rooms: %w", err)
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
		return fmt.Errorf("postgres: join room: %w", err)
	}
	defer tx.Rollback()
	a, err := roomAccess(ctx, tx, room, username)
	if err != nil {
		return err
	}
	if join, err := a.Join(); !join {
		return err // nil for General or a room they are in
	}
	res, err := tx.ExecContext(ctx, `
		INSERT INTO chat_room_members (room_id, username) VALUES ($1, $2)
		ON CONFLICT DO NOTHING`, room, username)
	if err != nil {
		return fmt.Errorf("postgres: join room: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		// What was said before joining is not unread.
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO chat_read_markers (username, room_id, last_read)
			VALUES ($2, $1, (SELECT coalesce(max(id), 0) FROM chat_history WHERE room_id = $1))
			ON CONFLICT (username, room_id) DO UPDATE
				SET last_read = greatest(chat_read_markers.last_read, EXCLUDED.last_read)`,
			room, username); err != nil {
			return fmt.Errorf("postgres: join room: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("postgres: join room: %w", err)
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
		`DELETE FROM chat_room_members WHERE room_id = $1 AND username = $2`, room, username); err != nil {
		return fmt.Errorf("postgres: leave room: %w", err)
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
		`SELECT room_id FROM chat_room_members WHERE username = $1 AND room_id <> 1 ORDER BY room_id`, username)
	if err != nil {
		return nil, fmt.Errorf("postgres: member rooms: %w", err)
	}
	defer rows.Close()
	ids := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("postgres: member rooms: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: member rooms: %w", err)
	}
	return ids, nil
}

// Members implements store.Rooms.
func (s *Store) Members(ctx context.Context, room int64) ([]string, error) {
	if _, err := roomAccess(ctx, s.db, room, ""); err != nil {
		return nil, err
	}
	query := `SELECT username FROM chat_room_members WHERE room_id = $1 ORDER BY joined_at, username`
	args := []any{room}
	if room == store.General {
		// The Node server's user_table may hold NULL names or one name
		// twice; neither is a member worth listing twice.
		query, args = `SELECT DISTINCT username FROM user_table WHERE username IS NOT NULL ORDER BY username`, nil
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: members: %w", err)
	}
	defer rows.Close()
	names := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("postgres: members: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: members: %w", err)
	}
	return names, nil
}

// DirectRoom implements store.Rooms. The pair's unique index makes the
// race safe: a second INSERT waits for the first transaction, then does
// nothing, and its SELECT (a new snapshot under READ COMMITTED) finds the
// room with both members already in it.
func (s *Store) DirectRoom(ctx context.Context, a, b string) (store.Room, error) {
	lo, hi, err := store.DirectPair(a, b)
	if err != nil {
		return store.Room{}, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Room{}, fmt.Errorf("postgres: direct room: %w", err)
	}
	defer tx.Rollback()
	var users int
	if err := tx.QueryRowContext(ctx,
		`SELECT count(DISTINCT username) FROM user_table WHERE username IN ($1, $2)`, lo, hi).Scan(&users); err != nil {
		return store.Room{}, fmt.Errorf("postgres: direct room: %w", err)
	}
	if users != 2 {
		return store.Room{}, store.ErrNotFound
	}
	r, err := scanRoom(tx.QueryRowContext(ctx, `
		INSERT INTO chat_rooms (name, kind, created_by, dm_a, dm_b) VALUES ('', 'direct', $1, $2, $3)
		ON CONFLICT (dm_a, dm_b) WHERE kind = 'direct' DO NOTHING
		RETURNING `+roomColumns, a, lo, hi))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		r, err = scanRoom(tx.QueryRowContext(ctx, `SELECT `+roomColumns+` FROM chat_rooms
			WHERE kind = 'direct' AND dm_a = $1 AND dm_b = $2`, lo, hi))
		if err != nil {
			return store.Room{}, fmt.Errorf("postgres: direct room: %w", err)
		}
		return r, nil
	case err != nil:
		return store.Room{}, fmt.Errorf("postgres: direct room: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO chat_room_members (room_id, username) VALUES ($1, $2), ($1, $3)`, r.ID, a, b); err != nil {
		return store.Room{}, fmt.Errorf("postgres: direct room: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.Room{}, fmt.Errorf("postgres: direct room: %w", err)
	}
	return r, nil
}

// MarkRead implements store.ReadMarkers.
func (s *Store) MarkRead(ctx context.Context, username string, room, messageID int64) (int64, error) {
	if username == "" {
		return 0, store.ErrForbidden
	}
	if err := s.checkMember(ctx, s.db, room, username); err != nil {
		return 0, err
	}
	var last int64
	err := s.db.QueryRowContext(ctx, `
		INSERT INTO chat_read_markers (username, room_id, last_read) VALUES ($1, $2, $3)
		ON CONFLICT (username, room_id) DO UPDATE
			SET last_read = greatest(chat_read_markers.last_read, EXCLUDED.last_read)
		RETURNING last_read`, username, room, max(messageID, 0)).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("postgres: mark read: %w", err)
	}
	return last, nil
}

// LastRead implements store.ReadMarkers.
func (s *Store) LastRead(ctx context.Context, username string, room int64) (int64, error) {
	var last int64
	err := s.db.QueryRowContext(ctx, `
		SELECT coalesce((SELECT last_read FROM chat_read_markers WHERE username = $1 AND room_id = $2), 0)`,
		username, room).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("postgres: last read: %w", err)
	}
	return last, nil
}

// RecentRoomMessages implements store.RoomMessages.
func (s *Store) RecentRoomMessages(ctx context.Context, reader string, room int64, limit int) ([]store.Message, error) {
	if err := s.checkMember(ctx, s.db, room, reader); err != nil {
		return nil, err
	}
	return s.recent(ctx, room, limit)
}

// RoomMessagesBefore implements store.RoomMessages.
func (s *Store) RoomMessagesBefore(ctx context.Context, reader string, room, before int64, limit int) ([]store.Message, error) {
	if err := s.checkMember(ctx, s.db, room, reader); err != nil {
		return nil, err
	}
	return s.before(ctx, room, before, limit)
}

// RoomMessagesAfter implements store.RoomMessages.
func (s *Store) RoomMessagesAfter(ctx context.Context, reader string, room, after int64, limit int) ([]store.Message, error) {
	if err := s.checkMember(ctx, s.db, room, reader); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return []store.Message{}, nil
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+messageColumns+` FROM chat_history
		WHERE room_id = $1 AND id > $2 ORDER BY id LIMIT $3`, room, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: room messages after: %w", err)
	}
	return scanMessages(rows)
}

// Message implements store.RoomMessages.
func (s *Store) Message(ctx context.Context, id int64) (store.Message, error) {
	return messageByID(ctx, s.db, id, false)
}

// messageByID reads message id, locking its row until the transaction
// ends when lock is set.
func messageByID(ctx context.Context, q querier, id int64, lock bool) (store.Message, error) {
	query := `SELECT ` + messageColumns + ` FROM chat_history WHERE id = $1 LIMIT 1`
	if lock {
		query += ` FOR UPDATE`
	}
	rows, err := q.QueryContext(ctx, query, id)
	if err != nil {
		return store.Message{}, fmt.Errorf("postgres: message: %w", err)
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
		return 0, fmt.Errorf("postgres: latest message id: %w", err)
	}
	return id, nil
}

// ChangedSince implements store.RoomMessages. Each side of the OR walks
// its partial index (migration 0006). The times are now() of the change's
// transaction: its start, not its commit, which a caller's margin covers.
func (s *Store) ChangedSince(ctx context.Context, since time.Time, limit int) ([]store.Message, error) {
	if limit <= 0 {
		return []store.Message{}, nil
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+messageColumns+` FROM (
			SELECT `+messageColumns+`, greatest(edited_at, deleted_at) AS changed_at
			FROM chat_history WHERE edited_at >= $1 OR deleted_at >= $1
			ORDER BY changed_at DESC, id DESC LIMIT $2
		) c ORDER BY changed_at, id`, since, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: changed since: %w", err)
	}
	return scanMessages(rows)
}

// EditMessage implements store.RoomMessages.
func (s *Store) EditMessage(ctx context.Context, id int64, username, content, clientID string) (store.Message, bool, error) {
	c := store.MessageChange{ID: id, Username: username, ClientID: clientID, Content: content}
	return s.change(ctx, c, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`UPDATE chat_history SET content = $2, edited_at = now() WHERE id = $1`, id, content)
		return err
	})
}

// DeleteMessage implements store.RoomMessages. The content is blanked
// rather than kept: the user asked for the text to go, and the Node
// server, which knows no deleted marker, must not show it either.
func (s *Store) DeleteMessage(ctx context.Context, id int64, username, clientID string) (store.Message, bool, error) {
	c := store.MessageChange{ID: id, Username: username, ClientID: clientID, Delete: true}
	return s.change(ctx, c, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`UPDATE chat_history SET content = '', deleted_at = now() WHERE id = $1`, id)
		return err
	})
}

// change makes c in one transaction, calling write when c.Check allows
// it. The change's client id is recorded first: a concurrent resend
// blocks on that row until this transaction ends, then finds it and
// applies nothing.
func (s *Store) change(ctx context.Context, c store.MessageChange, write func(tx *sql.Tx) error) (store.Message, bool, error) {
	if err := c.Validate(); err != nil {
		return store.Message{}, false, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Message{}, false, fmt.Errorf("postgres: change message: %w", err)
	}
	defer tx.Rollback()
	if c.ClientID != "" {
		res, err := tx.ExecContext(ctx, `
			INSERT INTO chat_message_changes (username, client_id, message_id) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, c.Username, c.ClientID, c.ID)
		if err != nil {
			return store.Message{}, false, fmt.Errorf("postgres: change message: %w", err)
		}
		var prev int64
		if n, _ := res.RowsAffected(); n == 0 {
			// A separate statement: its snapshot sees the row of the
			// transaction the INSERT waited for.
			if err := tx.QueryRowContext(ctx, `
				SELECT message_id FROM chat_message_changes WHERE username = $1 AND client_id = $2`,
				c.Username, c.ClientID).Scan(&prev); err != nil {
				return store.Message{}, false, fmt.Errorf("postgres: change message: %w", err)
			}
		}
		if prev != 0 {
			m, err := messageByID(ctx, tx, prev, false)
			return m, false, err
		}
	}
	m, err := messageByID(ctx, tx, c.ID, true)
	if err != nil {
		return store.Message{}, false, err
	}
	applied, err := c.Check(m, func(room int64) bool { return s.checkMember(ctx, tx, room, c.Username) == nil })
	if err != nil {
		return store.Message{}, false, err
	}
	if applied {
		if err := write(tx); err != nil {
			return store.Message{}, false, fmt.Errorf("postgres: change message: %w", err)
		}
	}
	if m, err = messageByID(ctx, tx, c.ID, false); err != nil {
		return store.Message{}, false, err
	}
	if err := tx.Commit(); err != nil {
		return store.Message{}, false, fmt.Errorf("postgres: change message: %w", err)
	}
	return m, applied, nil
}

// SearchMessages implements store.RoomMessages. plainto_tsquery reads the
// query as plain words (no operators), so no string is a syntax error; the
// expression matches the chat_history_search index.
func (s *Store) SearchMessages(ctx context.Context, username, query string, before int64, limit int) ([]store.Message, error) {
	if err := store.ValidateSearchQuery(query); err != nil {
		return nil, err
	}
	query = cleanQuery(query)
	if query == "" || limit <= 0 {
		return []store.Message{}, nil
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+messageColumns+` FROM chat_history
		WHERE to_tsvector('simple', coalesce(content, '')) @@ plainto_tsquery('simple', $2)
			AND deleted_at IS NULL
			AND (room_id = 1 OR room_id IN (
				SELECT room_id FROM chat_room_members WHERE username = $1 AND $1 <> ''))
			AND ($3 <= 0 OR id < $3)
		ORDER BY id DESC LIMIT $4`, username, query, before, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: search: %w", err)
	}
	return scanMessages(rows)
}

// cleanQuery makes any string a valid query text: PostgreSQL text holds
// neither NUL nor invalid UTF-8.
func cleanQuery(q string) string {
	q = strings.ToValidUTF8(q, " ")
	q = strings.ReplaceAll(q, "\x00", " ")
	return strings.TrimSpace(q)
}
