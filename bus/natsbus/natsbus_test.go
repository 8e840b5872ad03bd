package natsbus

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/bus/bustest"
)

// natsEnvVar names the variable holding the URL of a NATS server for the
// tests, e.g. nats://127.0.0.1:4222.
const natsEnvVar = "TEST_NATS_URL"

// natsURL returns TEST_NATS_URL, skipping the test when it is not set, or
// failing it under CI=true so that CI can never pass by skipping (the rule
// of internal/testpg).
func natsURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(natsEnvVar)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set; CI must run the NATS tests against a real server", natsEnvVar)
		}
		t.Skipf("%s is not set: skipping a test that needs a real NATS server", natsEnvVar)
	}
	return u
}

func TestContract(t *testing.T) {
	natsURL(t) // skip once rather than in every subtest
	bustest.Run(t, newBackend)
}

// BenchmarkPublishDeliver: publish on one server, handled on another.
//
//	TEST_NATS_URL=nats://127.0.0.1:4222 \
//	go test -run '^$' -bench PublishDeliver -benchtime 3000x -count 3 ./bus/natsbus
//
// Results, beside PostgreSQL's: section "bus" of bench/RESULTS.md
// (BENCH=bus bench/run.sh).
func BenchmarkPublishDeliver(b *testing.B) {
	bustest.Bench(b, newBackend)
}

// newBackend isolates each test on a subject of its own.
func newBackend(t testing.TB) bustest.OpenFunc {
	url := natsURL(t)
	var r [6]byte
	rand.Read(r[:])
	subject := "chatd.test." + hex.EncodeToString(r[:]) + ".events"
	return func(t testing.TB) (bus.Bus, func()) {
		b, err := New(url, subject, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		reconnect := func() {
			t.Helper()
			if err := b.nc.ForceReconnect(); err != nil {
				t.Fatalf("ForceReconnect: %v", err)
			}
		}
		return b, reconnect
	}
}

func TestNewRejectsBadSubject(t *testing.T) {
	for _, subject := range []string{"", "chatd.*", "chatd.>", "chat d"} {
		if b, err := New("nats://127.0.0.1:1", subject, slog.New(slog.DiscardHandler)); err == nil {
			b.Close()
			t.Errorf("New(%q) succeeded, want an error", subject)
		}
	}
}

func TestNewFailsWithoutServer(t *testing.T) {
	b, err := New("nats://chatd:secret@127.0.0.1:1", Subject, slog.New(slog.DiscardHandler))
	if err == nil {
		b.Close()
		t.Fatal("New succeeded with no server listening")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error shows the password: %v", err)
	}
}
