package server

import (
	"context"
	"log/slog"
	"sync"

	"golang.org/x/time/rate"
)

// sampledLog bounds the log lines that one kind of refusal can produce. A
// flood of bad or too-fast events should cost the server a counter
// increment each (the metrics count every one), not a log line each: an
// attacker must not be able to fill the disk or drown the lines an
// operator needs. Each message gets a burst of 10 lines and then one a
// second; the next line written says how many were left out.
type sampledLog struct {
	mu    sync.Mutex
	kinds map[string]*sampleState // by log message; a fixed, small set
}

type sampleState struct {
	lim        *rate.Limiter
	suppressed int
}

func newSampledLog() *sampledLog {
	return &sampledLog{kinds: map[string]*sampleState{}}
}

// Warn logs msg at warning level unless its kind is over its allowance.
func (l *sampledLog) Warn(log *slog.Logger, msg string, args ...any) {
	l.log(log, slog.LevelWarn, msg, args)
}

// Info logs msg at info level unless its kind is over its allowance.
func (l *sampledLog) Info(log *slog.Logger, msg string, args ...any) {
	l.log(log, slog.LevelInfo, msg, args)
}

func (l *sampledLog) log(log *slog.Logger, level slog.Level, msg string, args []any) {
	if !log.Enabled(context.Background(), level) {
		return
	}
	l.mu.Lock()
	st := l.kinds[msg]
	if st == nil {
		st = &sampleState{lim: rate.NewLimiter(1, 10)}
		l.kinds[msg] = st
	}
	if !st.lim.Allow() {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	n := st.suppressed
	st.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_before", n)
	}
	log.Log(context.Background(), level, msg, args...)
}
