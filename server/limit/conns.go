package limit

import "sync"

// ConnCounter caps the number of connections open at once per key. It is
// safe for concurrent use. It remembers only keys with at least one open
// connection, so its memory is bounded by the number of open connections.
type ConnCounter struct {
	max int

	mu sync.Mutex
	// open is guarded by mu: key → connections held, always ≥ 1.
	open map[string]int
}

// NewConnCounter returns a ConnCounter that lets each key hold at most max
// connections. It panics if max < 1.
func NewConnCounter(max int) *ConnCounter {
	if max < 1 {
		panic("limit: NewConnCounter: max must be at least 1")
	}
	return &ConnCounter{max: max, open: make(map[string]int)}
}

// Acquire counts one more connection for key and reports true, or reports
// false, counting nothing, if key already holds max. Each true must be
// matched by exactly one Release when that connection ends.
func (c *ConnCounter) Acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key] >= c.max {
		return false
	}
	c.open[key]++
	return true
}

// Release ends one connection counted by Acquire. Releasing a key that
// holds none does nothing.
func (c *ConnCounter) Release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch n := c.open[key]; {
	case n > 1:
		c.open[key] = n - 1
	case n == 1:
		delete(c.open, key)
	}
}

// Count returns the number of connections key holds.
func (c *ConnCounter) Count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open[key]
}

// Len returns the number of keys holding at least one connection.
func (c *ConnCounter) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}
