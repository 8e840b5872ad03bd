package limit

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestConnCounterSequence(t *testing.T) {
	type op struct {
		acquire bool // false: Release
		key     string
		want    bool // Acquire's result; ignored for Release
	}
	acq := func(k string, want bool) op { return op{true, k, want} }
	rel := func(k string) op { return op{false, k, false} }
	tests := []struct {
		name    string
		max     int
		ops     []op
		wantLen int
	}{
		{"up to max", 2, []op{acq("a", true), acq("a", true), acq("a", false)}, 1},
		{"release frees a slot", 1, []op{acq("a", true), acq("a", false), rel("a"), acq("a", true)}, 1},
		{"keys are independent", 1, []op{acq("a", true), acq("b", true), acq("a", false)}, 2},
		{"fully released key is forgotten", 2, []op{acq("a", true), acq("a", true), rel("a"), rel("a")}, 0},
		{"refused acquire counts nothing", 1, []op{acq("a", true), acq("a", false), rel("a"), acq("a", true), acq("a", false)}, 1},
		{"stray release is ignored", 1, []op{rel("a"), acq("a", true), acq("a", false)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConnCounter(tt.max)
			for i, o := range tt.ops {
				if !o.acquire {
					c.Release(o.key)
					continue
				}
				if got := c.Acquire(o.key); got != o.want {
					t.Fatalf("op %d: Acquire(%q) = %v, want %v", i, o.key, got, o.want)
				}
			}
			if got := c.Len(); got != tt.wantLen {
				t.Errorf("Len() = %d, want %d", got, tt.wantLen)
			}
		})
	}
}

// TestConnCounterConcurrent checks that the cap holds while many
// goroutines connect and disconnect as one key.
func TestConnCounterConcurrent(t *testing.T) {
	const max = 3
	c := NewConnCounter(max)
	var held, peak atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 2000 {
				if !c.Acquire("k") {
					continue
				}
				n := held.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				held.Add(-1)
				c.Release("k")
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > max {
		t.Errorf("%d connections held at once, want ≤ %d", p, max)
	}
	if got := c.Count("k"); got != 0 {
		t.Errorf("Count after all released = %d, want 0", got)
	}
	if got := c.Len(); got != 0 {
		t.Errorf("Len after all released = %d, want 0", got)
	}
}

func TestNewConnCounterPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewConnCounter(0) did not panic")
		}
	}()
	NewConnCounter(0)
}
