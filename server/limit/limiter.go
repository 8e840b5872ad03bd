// Package limit holds the chat server's abuse limits: per-key token buckets
// (Limiter), a cap on concurrent connections per key (ConnCounter), and the
// client address to key them by (ClientIP, AddrKey).
//
// Every type here is safe for concurrent use, and each bounds its own
// memory: a flood of distinct keys costs at most the configured number of
// entries, never one entry per key ever seen.
package limit

import (
	"sync"

	"golang.org/x/time/rate"
)

// Limiter is a set of token buckets, one per key (typically a client
// address from AddrKey): each key may do burst things at once and then
// perSecond things per second. It is safe for concurrent use.
//
// At most maxKeys buckets are kept. When a new key would exceed that, the
// bucket used least recently is forgotten, so its key starts again with a
// full burst. Forgotten buckets are normally idle ones, whose buckets had
// refilled anyway; but a client that owns more than maxKeys keys can keep
// resetting its own buckets, so choose maxKeys well above the number of
// clients active within burst/perSecond seconds, and key IPv6 clients by
// network (AddrKey), not by address.
type Limiter struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	// Fields below are guarded by mu. buckets and the list threaded
	// through its entries (head = most recently used) hold the same set.
	buckets    map[string]*bucket
	head, tail *bucket
}

// bucket is one key's token bucket and its place in the recency list.
type bucket struct {
	key        string
	lim        *rate.Limiter
	prev, next *bucket // toward head, toward tail
}

// NewLimiter returns a Limiter whose buckets hold burst tokens and refill
// at perSecond tokens per second, remembering at most maxKeys keys.
// A burst of 0 allows nothing (unless perSecond is rate.Inf). It panics if
// maxKeys < 1 or burst < 0.
func NewLimiter(perSecond float64, burst, maxKeys int) *Limiter {
	if maxKeys < 1 {
		panic("limit: NewLimiter: maxKeys must be at least 1")
	}
	if burst < 0 {
		panic("limit: NewLimiter: burst must not be negative")
	}
	return &Limiter{
		limit:   rate.Limit(perSecond),
		burst:   burst,
		max:     maxKeys,
		buckets: make(map[string]*bucket),
	}
}

// Allow takes one token from key's bucket and reports whether there was
// one. A refused call takes nothing, so a client that keeps trying while
// refused does not push its own recovery further away.
func (l *Limiter) Allow(key string) bool {
	// The bucket is used after the lock is released: rate.Limiter has its
	// own lock, and a bucket evicted meanwhile is merely forgotten.
	return l.bucket(key).Allow()
}

// Len returns the number of keys remembered, at most maxKeys.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// bucket returns key's bucket, creating it, and marks it most recently
// used.
func (l *Limiter) bucket(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[key]; ok {
		l.unlinkLocked(b)
		l.pushFrontLocked(b)
		return b.lim
	}
	if len(l.buckets) >= l.max {
		old := l.tail
		l.unlinkLocked(old)
		delete(l.buckets, old.key)
	}
	b := &bucket{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
	l.buckets[key] = b
	l.pushFrontLocked(b)
	return b.lim
}

func (l *Limiter) unlinkLocked(b *bucket) {
	if b.prev != nil {
		b.prev.next = b.next
	} else {
		l.head = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else {
		l.tail = b.prev
	}
	b.prev, b.next = nil, nil
}

func (l *Limiter) pushFrontLocked(b *bucket) {
	b.next = l.head
	if l.head != nil {
		l.head.prev = b
	}
	l.head = b
	if l.tail == nil {
		l.tail = b
	}
}
