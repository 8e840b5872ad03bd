package sqlite

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/chatd/chat/store"
)

var _ store.Presence = (*Store)(nil)

// presence is the online list of a SQLite store. It lives in memory, not in
// the file: one process owns a SQLite file, so there is no other server to
// share the list with, and a list written to disk would only outlive the
// process to name users who are gone. Implementing store.Presence anyway
// gives the server one code path for `get users` whatever the store.
type presence struct {
	mu sync.Mutex
	// Fields below are guarded by mu.
	beats map[string]time.Time  // server → last heartbeat
	since map[presenceKey]int64 // (server, user) → order of arrival
	next  int64
}

type presenceKey struct{ server, user string }

// AddPresence implements store.Presence.
func (s *Store) AddPresence(ctx context.Context, server, username string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := &s.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	k := presenceKey{server, username}
	if _, ok := p.since[k]; !ok {
		if p.since == nil {
			p.since = map[presenceKey]int64{}
		}
		p.next++
		p.since[k] = p.next
	}
	return nil
}

// RemovePresence implements store.Presence.
func (s *Store) RemovePresence(ctx context.Context, server, username string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := &s.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.since, presenceKey{server, username})
	return nil
}

// Heartbeat implements store.Presence. The process clock is the store's.
func (s *Store) Heartbeat(ctx context.Context, server string) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	p := &s.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.beats == nil {
		p.beats = map[string]time.Time{}
	}
	p.beats[server] = now
	return now, nil
}

// OnlineUsers implements store.Presence.
func (s *Store) OnlineUsers(ctx context.Context, since time.Time) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := &s.presence
	p.mu.Lock()
	first := map[string]int64{}
	for k, n := range p.since {
		if beat, ok := p.beats[k.server]; !ok || !beat.After(since) {
			continue
		}
		if f, ok := first[k.user]; !ok || n < f {
			first[k.user] = n
		}
	}
	p.mu.Unlock()
	users := make([]string, 0, len(first))
	for u := range first {
		users = append(users, u)
	}
	slices.SortFunc(users, func(a, b string) int {
		return cmp.Or(cmp.Compare(first[a], first[b]), cmp.Compare(a, b))
	})
	return users, nil
}

// ForgetServer implements store.Presence.
func (s *Store) ForgetServer(ctx context.Context, server string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := &s.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.beats, server)
	for k := range p.since {
		if k.server == server {
			delete(p.since, k)
		}
	}
	return nil
}
