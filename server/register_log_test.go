package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chatd/chat/server"
)

// Every refusal is logged, the taken username included: an operator
// looking into "I cannot register" finds the line, with the name and the
// address, and never the password.
func TestRegisterTakenIsLogged(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	const password = "Secret-pw-5150"
	a := e.connect(t, "a", "websocket")
	wantAck(t, "first register", a.call("register", creds("carol", password)), success)
	b := e.connect(t, "b", "websocket")
	wantAck(t, "second register", b.call("register", creds("carol", password+"x")), taken)

	deadline := time.Now().Add(waitFor)
	var line string
	for line == "" && time.Now().Before(deadline) {
		for l := range strings.SplitSeq(e.logs.String(), "\n") {
			if strings.Contains(l, "register refused: username taken") {
				line = l
			}
		}
		if line == "" {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if line == "" {
		t.Fatalf("no log line for the taken username; log:\n%s", e.logs.String())
	}
	for _, want := range []string{"level=INFO", "user=carol", "ip="} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %q lacks %q", line, want)
		}
	}
	if strings.Contains(e.logs.String(), password) {
		t.Errorf("the log contains the password")
	}
}
