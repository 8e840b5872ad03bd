package main

import (
	"strings"
	"testing"
)

// The profiler exposes the process's internals: an operator who asks for
// it on a public address gets a clear refusal at start-up.
func TestDebugAddrMustBeLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060"} {
		if _, err := parseFlags([]string{"-debug-addr", addr}); err != nil {
			t.Errorf("-debug-addr %s: %v", addr, err)
		}
	}
	for _, addr := range []string{":6060", "0.0.0.0:6060", "192.0.2.1:6060", "localhost", "127.0.0.1"} {
		_, err := parseFlags([]string{"-debug-addr", addr})
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("-debug-addr %s: got %v, want a refusal naming loopback", addr, err)
		}
	}
}

// Settings that would break the server at run time are refused at start.
func TestBadPoolAndSubjectRefused(t *testing.T) {
	for _, args := range [][]string{{"-db-max-conns", "0"}, {"-bus-subject", ""}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v was accepted", args)
		}
	}
	c, err := parseFlags(nil)
	if err != nil || c.dbMaxConns != 20 || c.busSubject != "chatd.events" {
		t.Fatalf("defaults: %+v %v", c, err)
	}
}
