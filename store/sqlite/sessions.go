package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/chatd/chat/store"
)

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO chat_sessions (token_hash, username, expires_at) VALUES (?, ?, ?)`,
		sess.TokenHash, sess.Username, sess.Expires.UnixMilli())
	if err != nil {
		return fmt.Errorf("sqlite: create session: %w", err)
	}
	// Expired sessions are swept as new ones are made, so the table stays
	// the size of the active user base.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM chat_sessions WHERE expires_at < ?`,
		time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("sqlite: sweep sessions: %w", err)
	}
	return nil
}

// SessionUser implements store.Sessions.
func (s *Store) SessionUser(ctx context.Context, tokenHash string, now time.Time) (string, error) {
	var user string
	err := s.db.QueryRowContext(ctx,
		`SELECT username FROM chat_sessions WHERE token_hash = ? AND expires_at > ?`,
		tokenHash, now.UnixMilli()).Scan(&user)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: session: %w", err)
	}
	return user, nil
}

// DeleteSession implements store.Sessions.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM chat_sessions WHERE token_hash = ?`, tokenHash); err != nil {
		return fmt.Errorf("sqlite: delete session: %w", err)
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
		WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: messages after: %w", err)
	}
	return scanMessages(rows)
}
