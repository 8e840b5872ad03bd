package limit

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkList verifies that the recency list and the map hold the same
// buckets, linked consistently in both directions.
func checkList(t testing.TB, l *Limiter) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	var prev *bucket
	for b := l.head; b != nil; b = b.next {
		if b.prev != prev {
			t.Fatalf("bucket %q: prev link broken", b.key)
		}
		if l.buckets[b.key] != b {
			t.Fatalf("bucket %q is listed but not in the map", b.key)
		}
		prev = b
		n++
	}
	if l.tail != prev {
		t.Fatalf("tail is %v, want the last listed bucket", l.tail)
	}
	if n != len(l.buckets) {
		t.Fatalf("list holds %d buckets, map %d", n, len(l.buckets))
	}
}

// TestLimiterSequence runs sequences of Allow calls. A rate of 0 never
// refills, which makes every answer deterministic.
func TestLimiterSequence(t *testing.T) {
	type call struct {
		key  string
		want bool
	}
	tests := []struct {
		name    string
		burst   int
		maxKeys int
		calls   []call
	}{
		{"burst then refuse", 2, 10, []call{{"a", true}, {"a", true}, {"a", false}, {"a", false}}},
		{"keys are independent", 1, 10, []call{{"a", true}, {"a", false}, {"b", true}, {"b", false}, {"a", false}}},
		{"zero burst allows nothing", 0, 10, []call{{"a", false}, {"b", false}}},
		{"empty key is a key", 1, 10, []call{{"", true}, {"", false}}},
		{
			// a is used again after b, so c evicts b, the least recent:
			// a keeps its empty bucket, b comes back with a full one.
			"evicts least recently used", 1, 2,
			[]call{{"a", true}, {"b", true}, {"a", false}, {"c", true}, {"a", false}, {"b", true}},
		},
		{
			"one key only", 1, 1,
			[]call{{"a", true}, {"a", false}, {"b", true}, {"a", true}, {"b", true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(0, tt.burst, tt.maxKeys)
			for i, c := range tt.calls {
				if got := l.Allow(c.key); got != c.want {
					t.Fatalf("call %d: Allow(%q) = %v, want %v", i, c.key, got, c.want)
				}
				checkList(t, l)
			}
		})
	}
}

func TestLimiterRefills(t *testing.T) {
	l := NewLimiter(200, 1, 10) // one token every 5 ms
	if !l.Allow("a") {
		t.Fatal("first Allow = false, want true")
	}
	if l.Allow("a") {
		t.Fatal("second Allow right away = true, want false")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !l.Allow("a") {
		if time.Now().After(deadline) {
			t.Fatal("bucket did not refill within 5 s at 200 tokens/s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLimiterMemoryBound is the flood of distinct client addresses: the
// limiter never remembers more than maxKeys of them.
func TestLimiterMemoryBound(t *testing.T) {
	const maxKeys, flood = 1000, 100_000
	l := NewLimiter(1, 5, maxKeys)
	for i := range flood {
		if !l.Allow("10." + strconv.Itoa(i)) {
			t.Fatalf("key %d refused its first call", i)
		}
		if i%997 == 0 {
			if got := l.Len(); got > maxKeys {
				t.Fatalf("after %d keys Len() = %d, want ≤ %d", i+1, got, maxKeys)
			}
		}
	}
	if got := l.Len(); got != maxKeys {
		t.Errorf("Len() = %d, want %d", got, maxKeys)
	}
	checkList(t, l)
	// The most recent keys are the ones kept.
	l.mu.Lock()
	_, newest := l.buckets["10."+strconv.Itoa(flood-1)]
	_, oldest := l.buckets["10.0"]
	l.mu.Unlock()
	if !newest || oldest {
		t.Errorf("newest key kept = %v, oldest kept = %v; want true, false", newest, oldest)
	}
}

// TestLimiterConcurrent hammers shared keys from many goroutines. Without
// eviction and without refill, exactly burst calls per key succeed however
// the calls interleave.
func TestLimiterConcurrent(t *testing.T) {
	const (
		goroutines = 16
		keys       = 50
		burst      = 7
		rounds     = 20
	)
	l := NewLimiter(0, burst, keys)
	var allowed [keys]atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				for k := range keys {
					k := (k + g + r) % keys
					if l.Allow(strconv.Itoa(k)) {
						allowed[k].Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		if got := allowed[k].Load(); got != burst {
			t.Errorf("key %d: %d calls allowed, want %d", k, got, burst)
		}
	}
	checkList(t, l)
}

// TestLimiterConcurrentEviction races eviction against use of the same
// buckets; run under -race.
func TestLimiterConcurrentEviction(t *testing.T) {
	const maxKeys = 64
	l := NewLimiter(1000, 3, maxKeys)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				l.Allow(strconv.Itoa((i * (g + 1)) % 500))
				if i%500 == 0 && l.Len() > maxKeys {
					t.Errorf("Len() = %d, want ≤ %d", l.Len(), maxKeys)
				}
			}
		})
	}
	wg.Wait()
	if got := l.Len(); got > maxKeys {
		t.Errorf("Len() = %d, want ≤ %d", got, maxKeys)
	}
	checkList(t, l)
}

func TestNewLimiterPanics(t *testing.T) {
	tests := []struct {
		name           string
		burst, maxKeys int
	}{
		{"zero keys", 1, 0},
		{"negative keys", 1, -1},
		{"negative burst", -1, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("NewLimiter(1, %d, %d) did not panic", tt.burst, tt.maxKeys)
				}
			}()
			NewLimiter(1, tt.burst, tt.maxKeys)
		})
	}
}

// BenchmarkAllow is the cost of one Allow: on a remembered key (the common
// case), and on a new key each time with the limiter full (the flood,
// which evicts on every call).
//
//	go test -run '^$' -bench . -benchmem ./server/limit/
//
// Results, with the memory of 100,000 keys and the calls per second of a
// flood they imply: section "limit" of bench/RESULTS.md (BENCH=limit
// bench/run.sh).
func BenchmarkAllow(b *testing.B) {
	const maxKeys = 10_000
	keys := make([]string, 4*maxKeys)
	for i := range keys {
		keys[i] = "198.51." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	b.Run("known-key", func(b *testing.B) {
		l := NewLimiter(1e9, 1e9, maxKeys)
		for i := range maxKeys {
			l.Allow(keys[i])
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Allow(keys[i%maxKeys])
			i++
		}
	})
	b.Run("new-key-evicting", func(b *testing.B) {
		l := NewLimiter(1e9, 1e9, maxKeys)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Allow(keys[i%len(keys)]) // 4×maxKeys keys in rotation: always a miss
			i++
		}
	})
	b.Run("known-key-parallel", func(b *testing.B) {
		l := NewLimiter(1e9, 1e9, maxKeys)
		for i := range maxKeys {
			l.Allow(keys[i])
		}
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				l.Allow(keys[i%maxKeys])
				i++
			}
		})
	})
}

// BenchmarkLimiterMemory reports the heap held per remembered key, to size
// maxKeys: maxKeys × heap-B/key is the limiter's worst case (section
// "limit" of bench/RESULTS.md).
func BenchmarkLimiterMemory(b *testing.B) {
	const maxKeys = 100_000
	keys := make([]string, maxKeys)
	for i := range keys {
		keys[i] = "203.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	var perKey float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := NewLimiter(1, 10, maxKeys)
		for _, k := range keys {
			l.Allow(k)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / maxKeys
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perKey, "heap-B/key")
}
