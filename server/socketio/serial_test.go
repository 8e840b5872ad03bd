package socketio

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSerialOrder queues tasks from many goroutines: each goroutine's
// tasks run in the order it queued them, never two at once.
func TestSerialOrder(t *testing.T) {
	var e serial
	const producers, per = 8, 500
	var running atomic.Int32
	last := make([]int, producers)
	var wg sync.WaitGroup
	var done sync.WaitGroup
	done.Add(producers * per)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= per; i++ {
				e.do(func() {
					defer done.Done()
					if running.Add(1) != 1 {
						t.Error("two tasks at once")
					}
					if last[p] != i-1 {
						t.Errorf("producer %d: task %d after %d", p, i, last[p])
					}
					last[p] = i
					running.Add(-1)
				}, 0)
			}
		}()
	}
	wg.Wait()
	done.Wait()
}

// TestSerialNoIdleGoroutine: the goroutine ends when the queue empties.
func TestSerialNoIdleGoroutine(t *testing.T) {
	base := runtime.NumGoroutine()
	execs := make([]serial, 200)
	var wg sync.WaitGroup
	for i := range execs {
		wg.Add(1)
		execs[i].do(func() { wg.Done() }, 0)
	}
	wg.Wait()
	idle := func() bool {
		for i := range execs {
			execs[i].mu.Lock()
			running := execs[i].running
			execs[i].mu.Unlock()
			if running {
				return false
			}
		}
		return runtime.NumGoroutine() <= base
	}
	deadline := time.Now().Add(5 * time.Second)
	for !idle() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), base)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSerialCloseAndBound(t *testing.T) {
	var e serial
	block := make(chan struct{})
	var ran []int
	var mu sync.Mutex
	note := func(i int) func() {
		return func() {
			mu.Lock()
			ran = append(ran, i)
			mu.Unlock()
		}
	}
	started := make(chan struct{})
	e.do(func() { close(started); <-block }, 0)
	<-started
	if !e.do(note(1), 2) || !e.do(note(2), 2) {
		t.Fatal("refused below the bound")
	}
	if e.do(note(3), 2) {
		t.Fatal("accepted over the bound")
	}
	finished := make(chan struct{})
	e.close(func() { note(4)(); close(finished) })
	if e.do(note(5), 0) {
		t.Fatal("accepted after close")
	}
	e.close(note(6))
	close(block)
	<-finished
	time.Sleep(10 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(ran) != 3 || ran[0] != 1 || ran[1] != 2 || ran[2] != 4 {
		t.Fatalf("ran %v, want [1 2 4]", ran)
	}
}

// TestSerialQueueCompacts: a queue that never empties does not grow
// without bound.
func TestSerialQueueCompacts(t *testing.T) {
	var e serial
	var wg sync.WaitGroup
	for i := 0; i < 10000; i++ {
		wg.Add(1)
		e.do(func() { wg.Done() }, 0)
	}
	wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	if cap(e.q) > 20000 {
		t.Fatalf("queue capacity %d after 10,000 tasks", cap(e.q))
	}
}
