package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chat/internal/testpg"
	"github.com/chatd/chat/internal/testproc"
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

// runMainEnv makes the test binary run the real main() instead of the
// tests (TestMain), so that tests can run chatd as a process, exit status
// and all, without a separate `go build`.
const runMainEnv = "CHATD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// clearSettingsEnv unsets every setting's variable for the test, so that
// the caller's environment (a PORT exported in the shell) changes nothing.
func clearSettingsEnv(t *testing.T) {
	t.Helper()
	for _, st := range newSettings(&config{}).list {
		t.Setenv(st.env, "") // an empty variable counts as unset
	}
}

// A bad setting stops start-up with a message naming the variable, the
// flag and what is wanted, whether it came from the environment or the
// command line. Before, the environment's bad values were warned about and
// replaced by the default: a backup with PORT=30o1 took the primary's 3000.
func TestBadSettingsRefused(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env, flag, value string
		want             string // what the message says is wanted
	}{
		{"PORT", "port", "abc", "a TCP port number 1-65535"},
		{"PORT", "port", "30o1", "a TCP port number 1-65535"},
		{"PORT", "port", "0", "a TCP port number 1-65535"},
		{"PORT", "port", "65536", "a TCP port number 1-65535"},
		{"PORT", "port", " 3001", "a TCP port number 1-65535"},
		{"PING_INTERVAL", "ping-interval", "fast", "a duration above zero"},
		{"PING_INTERVAL", "ping-interval", "3", "a duration above zero"},
		{"PING_INTERVAL", "ping-interval", "0s", "a duration above zero"},
		{"PING_TIMEOUT", "ping-timeout", "-5s", "a duration above zero"},
		{"SESSION_TTL", "session-ttl", "7d", "a duration above zero"},
		{"MESSAGE_RATE", "message-rate", "lots", "a number of requests per second above 0"},
		{"MESSAGE_RATE", "message-rate", "0", "a number of requests per second above 0"},
		{"MESSAGE_RATE", "message-rate", "NaN", "a number of requests per second above 0"},
		{"AUTH_RATE_PER_IP", "auth-rate-per-ip", "5/s", "a number of requests per second above 0"},
		{"LOGIN_RATE_PER_USER", "login-rate-per-user", "Inf", "a number of requests per second above 0"},
		{"PAGE_RATE", "page-rate", "", "a number of requests per second above 0"}, // flag only: an empty variable is unset
		{"MESSAGE_BURST", "message-burst", "0", "a whole number, 1 or more"},
		{"AUTH_BURST_PER_IP", "auth-burst-per-ip", "1e5", "a whole number, 1 or more"},
		{"ROOM_OP_RATE", "room-op-rate", "0", "a number of requests per second above 0"},
		{"ROOM_OP_RATE", "room-op-rate", "5/s", "a number of requests per second above 0"},
		{"ROOM_OP_BURST", "room-op-burst", "0", "a whole number, 1 or more"},
		{"ROOM_OP_BURST", "room-op-burst", "-1", "a whole number, 1 or more"},
		{"TYPING_RATE", "typing-rate", "0", "a number of requests per second above 0"},
		{"TYPING_RATE", "typing-rate", "NaN", "a number of requests per second above 0"},
		{"TYPING_BURST", "typing-burst", "0", "a whole number, 1 or more"},
		{"TYPING_BURST", "typing-burst", "2.5", "a whole number, 1 or more"},
		{"MAX_CONNS_PER_IP", "max-conns-per-ip", "1e9x", "a whole number of connections, 1 or more, or negative"},
		{"MAX_CONNS_PER_IP", "max-conns-per-ip", "0", "a whole number of connections, 1 or more, or negative"},
		{"HISTORY_LIMIT", "history-limit", "-1", "a whole number of messages, 0 (the whole history) or more"},
		{"BCRYPT_COST", "bcrypt-cost", "3", "a whole number 4-31"},
		{"BCRYPT_COST", "bcrypt-cost", "32", "a whole number 4-31"},
		{"MAX_MESSAGE_LENGTH", "max-message-length", "0", "a whole number of characters, 1 or more"},
		{"MAX_HTTP_BUFFER_SIZE", "max-http-buffer-size", "128k", "a whole number of bytes, 1 or more"},
		{"BODY_TIMEOUT", "body-timeout", "0s", "a duration like 10s, or negative to turn the timeout off"},
		{"WRITE_TIMEOUT", "write-timeout", "ten", "a duration like 10s, or negative to turn the timeout off"},
		{"LAME_DUCK", "lame-duck", "-1s", "a duration of 0 (all at once) or more"},
		{"DB_MAX_CONNS", "db-max-conns", "0", "a whole number of connections, 1 or more"},
		{"DB_CONNECT_TIMEOUT", "db-connect-timeout", "-1s", "a duration of 0 (try once) or more"},
		{"DB_CONNECT_TIMEOUT", "db-connect-timeout", "30", "a duration of 0 (try once) or more"},
		{"LOG_FORMAT", "log-format", "yaml", "text or json"},
		{"LOG_LEVEL", "log-level", "verbose", "debug, info, warn or error"},
		{"TRUSTED_PROXIES", "trusted-proxies", "10.0.0.0/33", "comma-separated addresses or CIDRs"},
		{"DEBUG_ADDR", "debug-addr", "0.0.0.0:6060", "a loopback address with a port"},
		{"PUBLIC_DIR", "public-dir", filepath.Join(dir, "missing"), "an existing directory"},
		{"PUBLIC_DIR", "public-dir", file, "an existing directory"},
		{"BUS_SUBJECT", "bus-subject", "", "a NATS subject, not empty"}, // flag only
		{"SQLITE_PATH", "sqlite-path", "", "a file path"},               // flag only
	}
	for _, tt := range tests {
		t.Run(tt.env+"="+tt.value, func(t *testing.T) {
			clearSettingsEnv(t)
			if tt.value != "" {
				t.Setenv(tt.env, tt.value)
				_, err := parseFlags(nil)
				wantRefusal(t, err, fmt.Sprintf("%s=%q: want %s", tt.env, tt.value, tt.want), "-"+tt.flag)
				t.Setenv(tt.env, "")
			}
			_, err := parseFlags([]string{"-" + tt.flag, tt.value})
			wantRefusal(t, err, fmt.Sprintf("-%s=%q: want %s", tt.flag, tt.value, tt.want), tt.env)
		})
	}
}

// wantRefusal checks that err is a settings refusal starting with prefix
// and naming other (the flag for a variable, the variable for a flag).
func wantRefusal(t *testing.T, err error, prefix, other string) {
	t.Helper()
	var se *settingsError
	switch {
	case err == nil:
		t.Errorf("accepted; want a refusal %q", prefix)
	case !errors.As(err, &se):
		t.Errorf("refused with %q, not as a bad setting (exit status 2)", err)
	case !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), other):
		t.Errorf("refusal %q; want it to start with %q and name %s", err, prefix, other)
	}
}

// Values at the edges of each range, the spellings operators use (upper-
// case log level, negative to turn a limit off, 0 for "no retry") are
// accepted, and a flag overrides a bad variable, as flags win.
func TestGoodSettingsAccepted(t *testing.T) {
	clearSettingsEnv(t)
	for k, v := range map[string]string{
		"PORT": "65535", "MESSAGE_RATE": "-1", "MAX_CONNS_PER_IP": "-1", "LOG_LEVEL": "DEBUG",
		"LOG_FORMAT": "JSON", "BODY_TIMEOUT": "-1s", "LAME_DUCK": "0s", "DB_CONNECT_TIMEOUT": "0s",
		"HISTORY_LIMIT": "0", "LOGIN_RATE_PER_USER": "0.05", "TRUSTED_PROXIES": "10.0.0.5, 192.168.0.0/16",
		"PUBLIC_DIR": t.TempDir(), "DEBUG_ADDR": "[::1]:6060", "BCRYPT_COST": "4",
		"ROOM_OP_RATE": "0.5", "ROOM_OP_BURST": "3", "TYPING_RATE": "-1", "TYPING_BURST": "12",
	} {
		t.Setenv(k, v)
	}
	c, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.port != 65535 || c.limits.MessagesPerUser != -1 || c.limits.ConnsPerIP != -1 || c.logLevel != "debug" ||
		c.logFormat != "json" || c.bodyTimeout != -time.Second || c.lameDuck != 0 || c.dbConnectTimeout != 0 ||
		c.historyLimit != 0 || c.limits.LoginPerUser != 0.05 || len(c.limits.TrustedProxies) != 2 || c.bcryptCost != 4 ||
		c.limits.RoomOpsPerUser != 0.5 || c.limits.RoomOpsBurst != 3 || c.limits.TypingPerUser != -1 || c.limits.TypingBurst != 12 {
		t.Errorf("settings read as %+v", c)
	}

	t.Setenv("PORT", "30o1")
	c, err = parseFlags([]string{"-port", "3001"})
	if err != nil || c.port != 3001 {
		t.Errorf("-port 3001 with PORT=30o1: port %d, %v; want 3001 (the flag wins)", c.port, err)
	}

	clearSettingsEnv(t)
	c, err = parseFlags(nil)
	if err != nil || c.port != 3000 || c.pingInterval != 3*time.Second || c.dbConnectTimeout != 30*time.Second ||
		c.limits.ConnsPerIP != 1000 || c.logLevel != "info" ||
		c.limits.RoomOpsPerUser != 5 || c.limits.RoomOpsBurst != 30 || c.limits.TypingPerUser != 2 || c.limits.TypingBurst != 6 {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

// Every bad variable is reported in one go, so a broken unit file is fixed
// in one round.
func TestBadSettingsAllReported(t *testing.T) {
	clearSettingsEnv(t)
	t.Setenv("PORT", "30o1")
	t.Setenv("PING_INTERVAL", "fast")
	_, err := parseFlags(nil)
	if err == nil || !strings.Contains(err.Error(), `PORT="30o1"`) || !strings.Contains(err.Error(), `PING_INTERVAL="fast"`) {
		t.Errorf("got %v; want both PORT and PING_INTERVAL named", err)
	}
}

// chatdProc is chatd run as a process (the test binary running main()).
type chatdProc struct {
	cmd  *exec.Cmd
	logs *testproc.Log
	done chan struct{}
	err  error // of Wait, once done is closed
}

// startChatd runs chatd with an environment built from scratch (so no
// variable of the caller's changes what is tested) plus env, and args.
func startChatd(t *testing.T, env []string, args ...string) *chatdProc {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append([]string{
		runMainEnv + "=1",
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"ADDR=127.0.0.1",
		"SQLITE_PATH=" + filepath.Join(dir, "chat.db"),
		"BCRYPT_COST=4",
		"LAME_DUCK=0s",
	}, env...)
	p := &chatdProc{cmd: cmd, logs: &testproc.Log{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("chatd output:\n%s", p.logs.String())
		}
	})
	return p
}

// exitWithin waits up to d for the process to end and returns its exit
// status (-1 if it did not end).
func (p *chatdProc) exitWithin(d time.Duration) int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

// waitLog waits up to d for the output to contain s.
func (p *chatdProc) waitLog(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(p.logs.String(), s) {
			return true
		}
		select {
		case <-p.done:
			return strings.Contains(p.logs.String(), s)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// The process itself stops at once on a bad value, with exit status 2 and
// the message on stderr, and never starts listening (on the default port
// or any other).
func TestBadSettingStopsTheProcess(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"PORT=abc"}, nil, `chatd: PORT="abc": want a TCP port number 1-65535 (environment; the flag is -port)`},
		{[]string{"PORT=30o1"}, nil, `chatd: PORT="30o1": want a TCP port number 1-65535`},
		{[]string{"PING_INTERVAL=fast"}, nil, `chatd: PING_INTERVAL="fast": want a duration above zero`},
		{[]string{"MESSAGE_RATE=lots"}, nil, `chatd: MESSAGE_RATE="lots": want a number of requests per second above 0`},
		{[]string{"MAX_CONNS_PER_IP=1e9x"}, nil, `chatd: MAX_CONNS_PER_IP="1e9x": want a whole number of connections`},
		{nil, []string{"-port", "30o1"}, `chatd: -port="30o1": want a TCP port number 1-65535 (flag; the environment variable is PORT)`},
		{nil, []string{"-no-such-flag"}, `chatd: flag provided but not defined: -no-such-flag`},
	} {
		t.Run(strings.Join(append(tt.env, tt.args...), " "), func(t *testing.T) {
			p := startChatd(t, tt.env, tt.args...)
			if code := p.exitWithin(20 * time.Second); code != 2 {
				t.Fatalf("exit status %d, want 2 (-1: still running)", code)
			}
			out := p.logs.String()
			if !strings.Contains(out, tt.want) {
				t.Errorf("output %q lacks %q", out, tt.want)
			}
			if strings.Contains(out, "listening") {
				t.Errorf("started listening despite the bad setting:\n%s", out)
			}
		})
	}
}

// With no DATABASE_URL the start-up log says plainly that this server
// keeps its own SQLite file, where, and that it shares nothing with other
// servers: two such servers behind nginx would show users different
// accounts and histories.
func TestStartupNamesSQLiteStore(t *testing.T) {
	port := testproc.FreePort(t)
	path := filepath.Join(t.TempDir(), "own.db")
	p := startChatd(t, []string{"PORT=" + strconv.Itoa(port), "SQLITE_PATH=" + path})
	if !p.waitLog("msg=listening", 30*time.Second) {
		t.Fatalf("not listening within 30 s")
	}
	line := logLine(p.logs.String(), "store: ")
	for _, want := range []string{"this server's own SQLite file " + path, "single-server",
		"shares no users and no history", "store=sqlite"} {
		if !strings.Contains(line, want) {
			t.Errorf("store line %q lacks %q", line, want)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitWithin(20 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}

// logLine returns the first line of out containing s, or "".
func logLine(out, s string) string {
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// A PostgreSQL that is not up at start-up is retried for
// DB_CONNECT_TIMEOUT, one log line per attempt, then the server exits with
// a message saying so; the password never appears.
func TestPostgresDownAtStartGivesUp(t *testing.T) {
	pgPort := testproc.FreePort(t) // nothing listens there
	const password = "Pw-not-in-logs-77"
	dsn := fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/chat?sslmode=disable", password, pgPort)
	start := time.Now()
	p := startChatd(t, []string{"PORT=" + strconv.Itoa(testproc.FreePort(t)), "DATABASE_URL=" + dsn, "DB_CONNECT_TIMEOUT=3s"})
	code := p.exitWithin(30 * time.Second)
	took := time.Since(start)
	out := p.logs.String()
	if code <= 0 {
		t.Fatalf("exit status %d, want non-zero (-1: still running)", code)
	}
	if took < 3*time.Second || took > 15*time.Second {
		t.Errorf("gave up after %s; want the 3 s budget (and not much more)", took)
	}
	attempts := strings.Count(out, `msg="PostgreSQL not reachable yet"`)
	if attempts < 3 || !strings.Contains(out, `attempt="1 of `) || !strings.Contains(out, "next_attempt_in=") ||
		!strings.Contains(out, "connection refused") || !strings.Contains(out, `next_attempt_in="none, giving up"`) {
		t.Errorf("want a log line per attempt (%d found) with the attempt number, error and next wait:\n%s", attempts, out)
	}
	redacted := fmt.Sprintf("postgres://postgres:xxxxx@127.0.0.1:%d/chat", pgPort)
	if !strings.Contains(out, redacted) {
		t.Errorf("output does not name the database as %s", redacted)
	}
	if !strings.Contains(out, "chatd: PostgreSQL at "+redacted) || !strings.Contains(out, "not reachable after") ||
		!strings.Contains(out, "DB_CONNECT_TIMEOUT=3s") {
		t.Errorf("no clear exit message:\n%s", out)
	}
	if strings.Contains(out, password) {
		t.Errorf("the password is in the output")
	}
	if strings.Contains(out, "listening") {
		t.Errorf("listened without a store")
	}
}

// A PostgreSQL that becomes reachable during the retry is found: the
// server comes up, serves /readyz, and its start-up line names the
// database (redacted) and the bus.
func TestPostgresUpDuringRetry(t *testing.T) {
	target, err := url.Parse(testpg.New(t))
	if err != nil {
		t.Fatal(err)
	}
	proxyPort := testproc.FreePort(t)
	const password = "Pw-not-in-logs-88" // trust auth ignores it; it must still not be logged
	dsn := *target
	dsn.Host = "127.0.0.1:" + strconv.Itoa(proxyPort)
	dsn.User = url.UserPassword(target.User.Username(), password)
	port := testproc.FreePort(t)
	p := startChatd(t, []string{"PORT=" + strconv.Itoa(port), "DATABASE_URL=" + dsn.String(), "DB_CONNECT_TIMEOUT=30s"})

	if !p.waitLog(`attempt="2 of `, 15*time.Second) {
		t.Fatalf("no second attempt logged within 15 s")
	}
	startProxy(t, "127.0.0.1:"+strconv.Itoa(proxyPort), target.Host)
	if !p.waitLog("msg=listening", 30*time.Second) {
		t.Fatalf("not listening within 30 s of the database becoming reachable")
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %d, want 200", resp.StatusCode)
	}
	out := p.logs.String()
	if !strings.Contains(out, `msg="PostgreSQL reachable"`) {
		t.Errorf("no log line saying the database was reached")
	}
	redacted := dsn
	redacted.User = url.UserPassword(target.User.Username(), "xxxxx")
	line := logLine(out, "store: ")
	for _, want := range []string{"store: PostgreSQL at " + redacted.String(), "bus between the servers: PostgreSQL LISTEN/NOTIFY", "store=postgres"} {
		if !strings.Contains(line, want) {
			t.Errorf("store line %q lacks %q", line, want)
		}
	}
	if strings.Contains(out, password) {
		t.Errorf("the password is in the output")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitWithin(20 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}

// startProxy forwards TCP connections from listen to target until the
// test ends: a database that "comes up" when it starts.
func startProxy(t *testing.T, listen, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(u, c); u.Close() }()
			go func() { defer wg.Done(); io.Copy(c, u); c.Close() }()
		}
	}()
}
