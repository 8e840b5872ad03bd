// Package sqlite is the embedded store: a single file, pure Go (no cgo), used
// when no PostgreSQL is configured so that the server runs on a fresh machine
// with nothing installed.
//
// It suits one server process. Failover and scale-out need a database that
// several processes share: use store/postgres for those.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"time"

	"github.com/chatd/chat/store"

	sqlite3 "modernc.org/sqlite"
	sqlite3lib "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store backed by one SQLite file. It is safe for concurrent
// use. Close releases the file.
type Store struct {
	db       *sql.DB
	presence presence
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Closer = (*Store)(nil)
)

// Open opens (creating when missing) the database file at path and applies
// the embedded migrations. ":memory:" gives a private in-memory database,
// for tests.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	// WAL lets readers run while a message is written; busy_timeout makes
	// concurrent writers queue instead of failing with SQLITE_BUSY.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if path == ":memory:" {
		// Every connection to :memory: is a different database.
		db.SetMaxOpenConns(1)
	}
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping reports whether the file can be queried.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.PingContext(ctx)
}

// migrate applies, in name order, each embedded migration not yet recorded
// in schema_migrations, each in its own transaction.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY)`); err != nil {
		return fmt.Errorf("sqlite: migrations table: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if err := s.migrateOne(ctx, name); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", name, err)
		}
	}
	return nil
}

func (s *Store) migrateOne(ctx context.Context, name string) error {
	body, err := migrations.ReadFile(name)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var done int
	if err := tx.QueryRowContext(ctx,
		`SELECT count(*) FROM schema_migrations WHERE name = ?`, name).Scan(&done); err != nil {
		return err
	}
	if done > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name) VALUES (?)`, name); err != nil {
		return err
	}
	return tx.Commit()
}

// CreateUser implements store.Users.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO user_table (username, password) VALUES (?, ?)`, u.Username, u.PasswordHash)
	if isUniqueViolation(err) {
		return store.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("sqlite: create user: %w", err)
	}
	return nil
}

// User implements store.Users.
func (s *Store) User(ctx context.Context, username string) (store.User, error) {
	u := store.User{Username: username}
	err := s.db.QueryRowContext(ctx,
		`SELECT password FROM user_table WHERE username = ?`, username).Scan(&u.PasswordHash)
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, store.ErrNotFound
	}
	if err != nil {
		return store.User{}, fmt.Errorf("sqlite: get user: %w", err)
	}
	return u, nil
}

// AddMessage implements store.Messages.
func (s *Store) AddMessage(ctx context.Context, m store.Message) (store.Message, bool, error) {
	m = store.NewMessage(m)
	if m.RoomID != store.General {
		if err := checkMember(ctx, s.db, m.RoomID, m.Username); err != nil {
			return store.Message{}, false, err
		}
	}
	var clientID sql.NullString
	if m.ClientID != "" {
		clientID = sql.NullString{String: m.ClientID, Valid: true}
	}
	var ms int64
	err := s.db.QueryRowContext(ctx, `
		INSERT INTO chat_history (content, username, client_id, room_id) VALUES (?, ?, ?, ?)
		ON CONFLICT (username, client_id) WHERE client_id IS NOT NULL DO NOTHING
		RETURNING id, created_at`, m.Content, m.Username, clientID, m.RoomID).Scan(&m.ID, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		// The same user already stored this ClientID: return that row.
		prev, err := s.messageByClientID(ctx, m.Username, m.ClientID)
		return prev, false, err
	}
	if err != nil {
		return store.Message{}, false, fmt.Errorf("sqlite: add message: %w", err)
	}
	m.Time = time.UnixMilli(ms).UTC()
	return m, true, nil
}

func (s *Store) messageByClientID(ctx context.Context, username, clientID string) (store.Message, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+messageColumns+` FROM chat_history
		WHERE username = ? AND client_id = ?`, username, clientID)
	if err != nil {
		return store.Message{}, fmt.Errorf("sqlite: message by client id: %w", err)
	}
	msgs, err := scanMessages(rows)
	if err != nil {
		return store.Message{}, err
	}
	if len(msgs) == 0 {
		return store.Message{}, fmt.Errorf("sqlite: message by client id: %w", store.ErrNotFound)
	}
	return msgs[0], nil
}

// RecentMessages implements store.Messages.
func (s *Store) RecentMessages(ctx context.Context, limit int) ([]store.Message, error) {
	return s.recent(ctx, store.General, limit)
}

// MessagesBefore implements store.Messages.
func (s *Store) MessagesBefore(ctx context.Context, before int64, limit int) ([]store.Message, error) {
	return s.before(ctx, store.General, before, limit)
}

func (s *Store) recent(ctx context.Context, room int64, limit int) ([]store.Message, error) {
	if limit <= 0 {
		limit = -1 // SQLite's "no limit"
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT * FROM (
			SELECT `+messageColumns+` FROM chat_history WHERE room_id = ? ORDER BY id DESC LIMIT ?
		) ORDER BY id`, room, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: recent messages: %w", err)
	}
	return scanMessages(rows)
}

func (s *Store) before(ctx context.Context, room, before int64, limit int) ([]store.Message, error) {
	if limit <= 0 {
		return []store.Message{}, nil
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT * FROM (
			SELECT `+messageColumns+` FROM chat_history
			WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?
		) ORDER BY id`, room, before, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: messages before: %w", err)
	}
	return scanMessages(rows)
}

// messageColumns is what scanMessages reads, in its order.
const messageColumns = `id, content, username, created_at, client_id, room_id, edited_at, deleted_at`

func scanMessages(rows *sql.Rows) ([]store.Message, error) {
	defer rows.Close()
	msgs := []store.Message{}
	for rows.Next() {
		var (
			m               store.Message
			ms              int64
			clientID        sql.NullString
			edited, deleted sql.NullInt64
		)
		if err := rows.Scan(&m.ID, &m.Content, &m.Username, &ms, &clientID, &m.RoomID, &edited, &deleted); err != nil {
			return nil, fmt.Errorf("sqlite: scan message: %w", err)
		}
		m.Time = time.UnixMilli(ms).UTC()
		m.ClientID = clientID.String
		if edited.Valid {
			m.Edited = time.UnixMilli(edited.Int64).UTC()
		}
		m.Deleted = deleted.Valid
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read messages: %w", err)
	}
	return msgs, nil
}

func isUniqueViolation(err error) bool {
	var se *sqlite3.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3lib.SQLITE_CONSTRAINT_UNIQUE ||
			se.Code() == sqlite3lib.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}
