// Package postgres is the store for deployments that share one PostgreSQL
// database between several server processes (primary and backup behind
// nginx), on the seed's own tables: a database the Node server used keeps
// working, row for row, and the Node server could still run against it.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/chatd/chat/store"
	"github.com/lib/pq"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key that serialises migrations when the
// primary and the backup start at the same moment.
const migrationLock = 0x63686174 // "chat"

// Store is a store.Store on PostgreSQL. It is safe for concurrent use and
// keeps no cache: every read goes to the database, so all processes sharing
// it agree. Close releases the connection pool.
type Store struct {
	db *sql.DB
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Closer = (*Store)(nil)
)

// DefaultMaxConns is the connection pool's size unless SetMaxConns changes
// it: three servers and their bus listeners fit in PostgreSQL's default
// max_connections of 100 with room to spare.
const DefaultMaxConns = 20

// SetMaxConns sets how many connections to the database the store may
// hold at once (n ≥ 1). Operators running many servers on one database
// size it so that servers × n stays below max_connections.
func (s *Store) SetMaxConns(n int) {
	s.db.SetMaxOpenConns(n)
	s.db.SetMaxIdleConns(max(1, n/2))
}

// Open connects to the database at dsn (a postgres:// URL or key=value
// string, as lib/pq takes) and applies the embedded migrations. It fails
// with a message naming the rows when an existing database cannot be
// migrated without changing its data.
func Open(ctx context.Context, dsn string) (*Store, error) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db.SetMaxOpenConns(DefaultMaxConns)
	db.SetMaxIdleConns(DefaultMaxConns / 2)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// DB returns the connection pool, for packages that build on the same
// database (the cross-server bus).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the connection pool.
func (s *Store) Close() error { return s.db.Close() }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.PingContext(ctx)
}

// migrate applies the embedded migrations not yet recorded, in one
// transaction under an advisory lock, so that concurrent start-ups apply
// each exactly once and a failure leaves the database as it was.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS chat_schema_migrations (
			name TEXT PRIMARY KEY,
			applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: migrations table: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		var done bool
		if err := tx.QueryRowContext(ctx,
			`SELECT EXISTS (SELECT 1 FROM chat_schema_migrations WHERE name = $1)`, name).Scan(&done); err != nil {
			return fmt.Errorf("postgres: migration %s: %w", name, err)
		}
		if done {
			continue
		}
		if strings.HasSuffix(name, "_unique_usernames.sql") {
			if err := checkDuplicateUsernames(ctx, tx); err != nil {
				return err
			}
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return fmt.Errorf("postgres: migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO chat_schema_migrations (name) VALUES ($1)`, name); err != nil {
			return fmt.Errorf("postgres: record migration %s: %w", name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("postgres: commit migrations: %w", err)
	}
	return nil
}

// checkDuplicateUsernames refuses to go on when user_table holds one name
// twice: a unique index cannot be built, and picking a row to delete would
// lose someone's password. The operator decides.
func checkDuplicateUsernames(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `
		SELECT username, count(*) FROM user_table
		GROUP BY username HAVING count(*) > 1 ORDER BY username LIMIT 20`)
	if err != nil {
		return fmt.Errorf("postgres: check duplicate usernames: %w", err)
	}
	defer rows.Close()
	var dups []string
	for rows.Next() {
		var name sql.NullString
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			return err
		}
		dups = append(dups, fmt.Sprintf("%q (%d rows)", name.String, n))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(dups) > 0 {
		return fmt.Errorf("postgres: cannot add a unique index on user_table.username: "+
			"these usernames have more than one row: %s; "+
			"delete the extra rows by hand (keep the password that user uses) and start again; nothing was changed",
			strings.Join(dups, ", "))
	}
	return nil
}

// CreateUser implements store.Users.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO user_table (username, password) VALUES ($1, $2)`, u.Username, u.PasswordHash)
	if isUniqueViolation(err) {
		return store.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("postgres: create user: %w", err)
	}
	return nil
}

// User implements store.Users.
func (s *Store) User(ctx context.Context, username string) (store.User, error) {
	var hash sql.NullString
	err := s.db.QueryRowContext(ctx,
		`SELECT password FROM user_table WHERE username = $1`, username).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, store.ErrNotFound
	}
	if err != nil {
		return store.User{}, fmt.Errorf("postgres: get user: %w", err)
	}
	return store.User{Username: username, PasswordHash: hash.String}, nil
}

// AddMessage implements store.Messages.
func (s *Store) AddMessage(ctx context.Context, m store.Message) (store.Message, bool, error) {
	m = store.NewMessage(m)
	if m.RoomID != store.General {
		if err := s.checkMember(ctx, s.db, m.RoomID, m.Username); err != nil {
			return store.Message{}, false, err
		}
	}
	var clientID sql.NullString
	if m.ClientID != "" {
		clientID = sql.NullString{String: m.ClientID, Valid: true}
	}
	err := s.db.QueryRowContext(ctx, `
		INSERT INTO chat_history (content, username, client_id, room_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (username, client_id) WHERE client_id IS NOT NULL DO NOTHING
		RETURNING id, created_at`, m.Content, m.Username, clientID, m.RoomID).Scan(&m.ID, &m.Time)
	if errors.Is(err, sql.ErrNoRows) {
		prev, err := s.messageByClientID(ctx, m.Username, m.ClientID)
		return prev, false, err
	}
	if err != nil {
		return store.Message{}, false, fmt.Errorf("postgres: add message: %w", err)
	}
	m.Time = m.Time.UTC()
	return m, true, nil
}

func (s *Store) messageByClientID(ctx context.Context, username, clientID string) (store.Message, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+messageColumns+` FROM chat_history
		WHERE username = $1 AND client_id = $2`, username, clientID)
	if err != nil {
		return store.Message{}, fmt.Errorf("postgres: message by client id: %w", err)
	}
	msgs, err := scanMessages(rows)
	if err != nil {
		return store.Message{}, err
	}
	if len(msgs) == 0 {
		return store.Message{}, fmt.Errorf("postgres: message by client id: %w", store.ErrNotFound)
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
	var lim sql.NullInt64 // NULL means no limit
	if limit > 0 {
		lim = sql.NullInt64{Int64: int64(limit), Valid: true}
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT * FROM (
			SELECT `+messageColumns+` FROM chat_history
			WHERE room_id = $1 ORDER BY id DESC LIMIT $2
		) AS recent ORDER BY id`, room, lim)
	if err != nil {
		return nil, fmt.Errorf("postgres: recent messages: %w", err)
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
			WHERE room_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3
		) AS page ORDER BY id`, room, before, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: messages before: %w", err)
	}
	return scanMessages(rows)
}

// messageColumns is what scanMessages reads, in its order.
const messageColumns = `id, content, username, created_at, client_id, room_id, edited_at, deleted_at`

// scanMessages reads rows of messageColumns. The seed's columns have no
// NOT NULL, so NULLs written by the Node server read as empty strings.
func scanMessages(rows *sql.Rows) ([]store.Message, error) {
	defer rows.Close()
	msgs := []store.Message{}
	for rows.Next() {
		var (
			m                           store.Message
			content, username, clientID sql.NullString
			edited, deleted             sql.NullTime
		)
		if err := rows.Scan(&m.ID, &content, &username, &m.Time, &clientID, &m.RoomID, &edited, &deleted); err != nil {
			return nil, fmt.Errorf("postgres: scan message: %w", err)
		}
		m.Content, m.Username, m.ClientID = content.String, username.String, clientID.String
		m.Time = m.Time.UTC()
		if edited.Valid {
			m.Edited = edited.Time.UTC()
		}
		m.Deleted = deleted.Valid
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read messages: %w", err)
	}
	return msgs, nil
}

func isUniqueViolation(err error) bool {
	var pe *pq.Error
	return errors.As(err, &pe) && pe.Code == "23505"
}
