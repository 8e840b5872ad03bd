package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/chatd/chat/store"
)

var _ store.Presence = (*Store)(nil)

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO chat_sessions (token_hash, username, expires_at) VALUES ($1, $2, $3)`,
		sess.TokenHash, sess.Username, sess.Expires)
	if err != nil {
		return fmt.Errorf("postgres: create session: %w", err)
	}
	// Expired sessions are swept as new ones are made, so the table stays
	// the size of the active user base.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM chat_sessions WHERE expires_at < now()`); err != nil {
		return fmt.Errorf("postgres: sweep sessions: %w", err)
	}
	return nil
}

// SessionUser implements store.Sessions.
func (s *Store) SessionUser(ctx context.Context, tokenHash string, now time.Time) (string, error) {
	var user string
	err := s.db.QueryRowContext(ctx,
		`SELECT username FROM chat_sessions WHERE token_hash = $1 AND expires_at > $2`,
		tokenHash, now).Scan(&user)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("postgres: session: %w", err)
	}
	return user, nil
}

// DeleteSession implements store.Sessions.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM chat_sessions WHERE token_hash = $1`, tokenHash); err != nil {
		return fmt.Errorf("postgres: delete session: %w", err)
	}
	return nil
}

// MessagesAfter implements store.Messages.
func (s *Store) MessagesAfter(ctx context.Context, after int64, limit int) ([]store.Message, error) {
	if limit <= 0 {
		return []store.Message{}, nil
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+messageColumns+` FROM chat_history
		WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: messages after: %w", err)
	}
	return scanMessages(rows)
}

// AddPresence implements store.Presence.
func (s *Store) AddPresence(ctx context.Context, server, username string) error {
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO chat_presence (server_id, username) VALUES ($1, $2)
		ON CONFLICT (server_id, username) DO NOTHING`, server, username)
	if err != nil {
		return fmt.Errorf("postgres: add presence: %w", err)
	}
	return nil
}

// RemovePresence implements store.Presence.
func (s *Store) RemovePresence(ctx context.Context, server, username string) error {
	_, err := s.db.ExecContext(ctx,
		`DELETE FROM chat_presence WHERE server_id = $1 AND username = $2`, server, username)
	if err != nil {
		return fmt.Errorf("postgres: remove presence: %w", err)
	}
	return nil
}

// Heartbeat implements store.Presence.
func (s *Store) Heartbeat(ctx context.Context, server string) (time.Time, error) {
	var now time.Time
	err := s.db.QueryRowContext(ctx, `
		INSERT INTO chat_servers (server_id, heartbeat_at) VALUES ($1, clock_timestamp())
		ON CONFLICT (server_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at
		RETURNING heartbeat_at`, server).Scan(&now)
	if err != nil {
		return time.Time{}, fmt.Errorf("postgres: heartbeat: %w", err)
	}
	return now, nil
}

// OnlineUsers implements store.Presence.
func (s *Store) OnlineUsers(ctx context.Context, since time.Time) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT p.username FROM chat_presence p
		JOIN chat_servers srv ON srv.server_id = p.server_id
		WHERE srv.heartbeat_at > $1
		GROUP BY p.username ORDER BY min(p.since), p.username`, since)
	if err != nil {
		return nil, fmt.Errorf("postgres: online users: %w", err)
	}
	defer rows.Close()
	users := []string{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("postgres: online users: %w", err)
		}
		users = append(users, u)
	}
	return users, rows.Err()
}

// ForgetServer implements store.Presence.
func (s *Store) ForgetServer(ctx context.Context, server string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("postgres: forget server: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM chat_presence WHERE server_id = $1`, server); err != nil {
		return fmt.Errorf("postgres: forget server: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM chat_servers WHERE server_id = $1`, server); err != nil {
		return fmt.Errorf("postgres: forget server: %w", err)
	}
	// Servers that died long ago leave rows behind; the next clean
	// shutdown sweeps them.
	if _, err := tx.ExecContext(ctx, `
		DELETE FROM chat_presence WHERE server_id IN (
			SELECT server_id FROM chat_servers WHERE heartbeat_at < now() - interval '1 hour')`); err != nil {
		return fmt.Errorf("postgres: sweep servers: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM chat_servers WHERE heartbeat_at < now() - interval '1 hour'`); err != nil {
		return fmt.Errorf("postgres: sweep servers: %w", err)
	}
	return tx.Commit()
}
