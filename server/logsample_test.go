package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A flood of refusals writes a bounded number of log lines, and the line
// after a quiet second says how many were left out.
func TestSampledLogBoundsAFlood(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := newSampledLog()
	for range 5000 {
		l.Warn(log, "message refused: rate limit", "user", "flooder")
	}
	l.Info(log, "register refused", "reason", "bad") // another kind has its own allowance
	lines := strings.Count(buf.String(), "\n")
	if lines > 12 {
		t.Fatalf("5,000 refusals wrote %d log lines, want at most 11 (a burst of 10 and the other kind)", lines)
	}
	if !strings.Contains(buf.String(), "register refused") {
		t.Fatal("a different refusal was suppressed by the flood of another")
	}
	time.Sleep(1100 * time.Millisecond)
	buf.Reset()
	l.Warn(log, "message refused: rate limit", "user", "flooder")
	if !strings.Contains(buf.String(), "suppressed_before=") {
		t.Fatalf("the next line does not count what was left out: %q", buf.String())
	}
}
