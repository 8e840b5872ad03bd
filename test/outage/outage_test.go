// Package outage stops PostgreSQL under running chat servers and starts it
// again: the servers must stay up, say clearly that they cannot serve,
// lose and double nothing, and recover by themselves.
package outage

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
	"github.com/chatd/chat/internal/testproc"
)

// pgInstance is a throwaway PostgreSQL server of the test's own, on a spare
// port, so the test can kill it without touching the machine's.
type pgInstance struct {
	t            *testing.T
	bin, dir     string
	port         int
	runAs        []string // command prefix that runs as the postgres user
	sockDir, log string
}

func pgBinDir(t *testing.T) string {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("initdb not found: PostgreSQL server binaries are needed for the outage test")
		}
		t.Skip("initdb not found (PostgreSQL server binaries): skipping the outage test")
	}
	return filepath.Dir(matches[len(matches)-1])
}

func newPG(t *testing.T) *pgInstance {
	t.Helper()
	p := &pgInstance{t: t, bin: pgBinDir(t), port: testproc.FreePort(t)}
	// Not t.TempDir: its parent is private to root, and the server runs
	// as postgres.
	base, err := os.MkdirTemp("", "chat-outage-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o777)
	p.dir = filepath.Join(base, "data")
	p.sockDir = base
	p.log = filepath.Join(base, "pg.log")
	// PostgreSQL refuses to run as root; CI runs as root.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root without a postgres user")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chown(base, uid, gid)
		p.runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	p.run("initdb", "-D", p.dir, "-A", "trust", "-U", "postgres", "--no-sync")
	p.start()
	t.Cleanup(func() { p.pgctl("stop", "-m", "immediate") })
	return p
}

func (p *pgInstance) run(tool string, args ...string) {
	p.t.Helper()
	argv := append(append([]string{}, p.runAs...), append([]string{filepath.Join(p.bin, tool)}, args...)...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("%s: %v\n%s", tool, err, out)
	}
}

func (p *pgInstance) pgctl(args ...string) error {
	argv := append(append([]string{}, p.runAs...), append([]string{filepath.Join(p.bin, "pg_ctl"), "-D", p.dir, "-w", "-l", p.log}, args...)...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %v: %v\n%s", args, err, out)
	}
	return nil
}

func (p *pgInstance) start() {
	p.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", p.port, p.sockDir)
	if err := p.pgctl("start", "-o", opts); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pgInstance) stop() {
	p.t.Helper()
	if err := p.pgctl("stop", "-m", "immediate"); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pgInstance) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// chatd is one server process.
type chatd struct {
	cmd  *exec.Cmd
	port int
	logs *testproc.Log
	done chan struct{}
}

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "chatd")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startChatd(t *testing.T, bin, dsn string) *chatd {
	t.Helper()
	c := &chatd{port: testproc.FreePort(t), logs: &testproc.Log{}, done: make(chan struct{})}
	c.cmd = exec.Command(bin)
	c.cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(c.port), "ADDR=127.0.0.1", "DATABASE_URL="+dsn, "BCRYPT_COST=4")
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", c.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for c.status("/healthz") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("server not up:\n%s", c.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

func (c *chatd) url() string { return fmt.Sprintf("http://127.0.0.1:%d", c.port) }

func (c *chatd) status(path string) int {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(c.url() + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (c *chatd) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// waitUntil polls cond for up to limit.
func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

type recorder struct {
	mu   sync.Mutex
	msgs map[string]int // text → times delivered
}

func (r *recorder) onEvent(name string, args []any) {
	if name != "new message" {
		return
	}
	m, _ := args[0].(map[string]any)
	r.mu.Lock()
	r.msgs[fmt.Sprint(m["msg"])]++
	r.mu.Unlock()
}

func (r *recorder) count(text string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[text]
}

func call(t *testing.T, c *sioclient.Conn, ev string, args ...any) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	a, err := c.Call(ctx, ev, args...)
	if err != nil {
		t.Fatalf("%s: no acknowledgement after %v: %v", ev, time.Since(start).Round(time.Millisecond), err)
	}
	m, _ := a[0].(map[string]any)
	return m
}

func TestDatabaseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL; skipped with -short")
	}
	pg := newPG(t)
	bin := build(t)
	a := startChatd(t, bin, pg.url())
	b := startChatd(t, bin, pg.url())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	onA, err := sioclient.Dial(ctx, a.url(), sioclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer onA.Close()
	seenB := &recorder{msgs: map[string]int{}}
	onB, err := sioclient.Dial(ctx, b.url(), sioclient.Options{OnEvent: seenB.onEvent})
	if err != nil {
		t.Fatal(err)
	}
	defer onB.Close()
	if r := call(t, onA, "register", map[string]any{"username": "ada", "password": "pw"}); r["success"] != true {
		t.Fatal(r)
	}
	if r := call(t, onA, "login", map[string]any{"username": "ada", "password": "pw"}); r["success"] != true {
		t.Fatal(r)
	}
	if r := call(t, onA, "send message", "before", map[string]any{"id": "m-before"}); r["success"] != true {
		t.Fatal(r)
	}
	waitUntil(t, "B sees the first message", 5*time.Second, func() bool { return seenB.count("before") == 1 })

	// The database goes away.
	pg.stop()
	took := waitUntil(t, "/readyz turns 503", 10*time.Second, func() bool { return a.status("/readyz") == 503 })
	t.Logf("/readyz reported the outage after %v", took.Round(time.Millisecond))
	if a.status("/healthz") != 200 {
		t.Error("/healthz failed during the outage: the process is up and should say so")
	}
	var outbox []string
	for i := range 3 {
		text := fmt.Sprint("during ", i)
		start := time.Now()
		r := call(t, onA, "send message", text, map[string]any{"id": "m-during-" + fmt.Sprint(i)})
		if r["success"] != false || r["message"] != "Service temporarily unavailable, please try again" {
			t.Errorf("send during the outage: %v, want a clear failure", r)
		}
		t.Logf("send during the outage answered in %v: %v", time.Since(start).Round(time.Millisecond), r["message"])
		outbox = append(outbox, text)
	}
	onA2, err := sioclient.Dial(ctx, a.url(), sioclient.Options{})
	if err != nil {
		t.Fatalf("connecting during the outage: %v", err)
	}
	defer onA2.Close()
	if r := call(t, onA2, "login", map[string]any{"username": "ada", "password": "pw"}); r["message"] != "Service temporarily unavailable, please try again" {
		t.Errorf("login during the outage: %v; want 'unavailable', not 'invalid password'", r)
	}

	// It comes back: everything resumes without a restart.
	pg.start()
	took = waitUntil(t, "/readyz back to 200", 20*time.Second, func() bool { return a.status("/readyz") == 200 && b.status("/readyz") == 200 })
	t.Logf("/readyz recovered %v after PostgreSQL restarted", took.Round(time.Millisecond))
	for i, text := range outbox {
		// The client resends its outbox with the same ids.
		if r := call(t, onA, "send message", text, map[string]any{"id": "m-during-" + fmt.Sprint(i)}); r["success"] != true {
			t.Errorf("resend after recovery: %v", r)
		}
	}
	if r := call(t, onA, "send message", "before", map[string]any{"id": "m-before"}); r["success"] != true {
		t.Errorf("a resend of an old message: %v", r)
	}
	if r := call(t, onA2, "login", map[string]any{"username": "ada", "password": "pw"}); r["success"] != true {
		t.Errorf("login after recovery: %v", r)
	}
	// B's bus listener reconnected by itself: A's messages reach B's client.
	took = waitUntil(t, "B receives the outbox through the reconnected bus", 20*time.Second, func() bool {
		for _, text := range outbox {
			if seenB.count(text) != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("bus delivered the outbox to B %v after the resends", took.Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	for _, text := range append(outbox, "before") {
		if n := seenB.count(text); n != 1 {
			t.Errorf("B saw %q %d times, want once", text, n)
		}
	}
	if !a.alive() || !b.alive() {
		t.Fatal("a server process exited during the outage")
	}
	// The database holds each message once.
	stored := countRows(t, pg)
	if stored != 4 {
		t.Errorf("%d messages stored, want 4 (1 before, 3 from the outbox, none doubled)", stored)
	}
	t.Logf("outage: 1 message before, 3 refused during and resent after, 1 duplicate resend; stored %d; both servers stayed up", stored)
}

func countRows(t *testing.T, pg *pgInstance) int {
	t.Helper()
	argv := append(append([]string{}, pg.runAs...), filepath.Join(pg.bin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(pg.port), "-U", "postgres", "-Atc", "SELECT count(*) FROM chat_history")
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}
