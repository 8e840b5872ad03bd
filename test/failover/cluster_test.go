// Package failover runs the deployment of the report's section 3.1 for real:
// the chat binary as primary and backup on one PostgreSQL, behind nginx with
// the repository's nginx.conf (WebSocket clients) or with the report's own
// block as printed (test/report-nginx.conf, long-polling clients), and
// breaks it while clients chat.
package failover

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chat/internal/testpg"
	"github.com/chatd/chat/internal/testproc"
)

// Heartbeat settings under test: a hung server is noticed by clients after
// PING_INTERVAL + PING_TIMEOUT, and nginx.conf's proxy_read_timeout must stay
// above PING_INTERVAL. See nginx.conf and the README's failover section.
const (
	pingInterval = "3s"
	pingTimeout  = "5s"
)

// cluster is chat servers and nginx in front of them: the primary and
// the backup of nginx.conf, or the N active servers of nginx-cluster.conf.
type cluster struct {
	t     *testing.T
	dir   string
	bin   string
	dsn   string
	env   []string            // extra environment for every server
	envOf map[string][]string // extra environment for one server, after env
	ports map[string]int      // each server's, and nginx's
	conf  string              // nginx config file in the repository
	addrs map[string]string   // upstream address in conf → server name

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	cmd  *exec.Cmd
	logs *testproc.Log
	done chan struct{}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// nginxPath finds nginx, installing it under CI (scripts/ensure-nginx.sh).
func nginxPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		out, err := exec.Command("bash", filepath.Join(repoRoot(t), "scripts/ensure-nginx.sh")).CombinedOutput()
		if err != nil {
			t.Fatalf("installing nginx: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out[strings.LastIndexByte(strings.TrimSpace(string(out)), '\n')+1:]))
	}
	t.Skip("nginx is not installed: run scripts/ensure-nginx.sh (scripts/test.sh does)")
	return ""
}

// newCluster is the report's deployment: primary, backup, nginx.conf.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	return newClusterOf(t, "nginx.conf", []string{"primary", "backup"})
}

// newClusterOf starts the servers named (whose upstream addresses in conf
// are 127.0.0.1:3000, :3001, … in that order) and nginx with conf.
func newClusterOf(t *testing.T, conf string, names []string, env ...string) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("failover tests take a minute; skipped with -short")
	}
	ngx := nginxPath(t)
	c := &cluster{
		t:     t,
		dir:   t.TempDir(),
		dsn:   testpg.New(t),
		env:   env,
		conf:  conf,
		ports: map[string]int{"nginx": testproc.FreePort(t)},
		addrs: map[string]string{},
		procs: map[string]*proc{},
	}
	for i, name := range names {
		c.ports[name] = testproc.FreePort(t)
		c.addrs[fmt.Sprintf("127.0.0.1:%d", 3000+i)] = name
	}
	os.Chmod(c.dir, 0o755) // nginx workers run as nobody when started by root
	c.bin = chatdBinary(t)
	for _, name := range names {
		c.start(name)
	}
	c.startNginx(ngx)
	t.Cleanup(c.stopAll)
	return c
}

var chatd struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// chatdBinary builds the server once for the whole package.
func chatdBinary(t *testing.T) string {
	t.Helper()
	chatd.once.Do(func() {
		chatd.dir, chatd.err = os.MkdirTemp("", "failover-chatd-")
		if chatd.err != nil {
			return
		}
		os.Chmod(chatd.dir, 0o755)
		chatd.bin, chatd.err = testproc.BuildChatd(chatd.dir)
	})
	if chatd.err != nil {
		t.Fatal(chatd.err)
	}
	return chatd.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if chatd.dir != "" {
		os.RemoveAll(chatd.dir)
	}
	os.Exit(code)
}

func (c *cluster) url() string { return fmt.Sprintf("http://127.0.0.1:%d", c.ports["nginx"]) }

func (c *cluster) start(name string) {
	c.t.Helper()
	cmd := exec.Command(c.bin)
	cmd.Env = append(os.Environ(),
		"PORT="+fmt.Sprint(c.ports[name]), "ADDR=127.0.0.1",
		"DATABASE_URL="+c.dsn, "HISTORY_LIMIT=0",
		"PING_INTERVAL="+pingInterval, "PING_TIMEOUT="+pingTimeout,
		"LOG_LEVEL=info", "LAME_DUCK="+lameDuck.String(),
		// The cheapest bcrypt: 50 users register at once, and this test
		// is about failover, not password hashing.
		"BCRYPT_COST=4")
	cmd.Env = append(cmd.Env, c.env...)
	cmd.Env = append(cmd.Env, c.envOf[name]...)
	logs := &testproc.Log{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	waitHTTP(c.t, fmt.Sprintf("http://127.0.0.1:%d/healthz", c.ports[name]), p.done)
}

func (c *cluster) startNginx(bin string) {
	c.t.Helper()
	conf, err := os.ReadFile(filepath.Join(repoRoot(c.t), c.conf))
	if err != nil {
		c.t.Fatal(err)
	}
	s := string(conf)
	// Two passes through placeholders: a new port such as 30012 must not
	// be rewritten again as the address 127.0.0.1:3001.
	rewrite := map[string]string{"listen 80;": fmt.Sprintf("listen 127.0.0.1:%d;", c.ports["nginx"])}
	for addr, name := range c.addrs {
		if !strings.Contains(s, addr) {
			c.t.Fatalf("%s has no %q to rewrite", c.conf, addr)
		}
		s = strings.ReplaceAll(s, addr, "@@"+name+"@@")
		rewrite["@@"+name+"@@"] = fmt.Sprintf("127.0.0.1:%d", c.ports[name])
	}
	for old, new := range rewrite {
		if !strings.Contains(s, old) {
			c.t.Fatalf("%s has no %q to rewrite", c.conf, old)
		}
		s = strings.ReplaceAll(s, old, new)
	}
	prefix := filepath.Join(c.dir, "nginx")
	os.MkdirAll(filepath.Join(prefix, "logs"), 0o777)
	os.Chmod(prefix, 0o777)
	if err := os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(s), 0o644); err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", filepath.Join(prefix, "nginx.conf"),
		"-g", fmt.Sprintf("daemon off; pid %s/nginx.pid; error_log %s/error.log;", prefix, prefix))
	logs := &testproc.Log{}
	cmd.Stdout, cmd.Stderr = logs, logs
	// Its own process group, so stopAll ends the workers with the master.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs["nginx"] = p
	c.mu.Unlock()
	waitHTTP(c.t, c.url()+"/healthz", p.done)
}

func waitHTTP(t *testing.T, url string, died <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-died:
			t.Fatalf("process for %s exited during start-up", url)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready within 20 s", url)
}

func (c *cluster) signal(name string, sig syscall.Signal) {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signal %s: %v", name, err)
	}
}

// waitExit waits for name to exit and reports how long it took.
func (c *cluster) waitExit(name string, limit time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(limit):
		c.t.Fatalf("%s did not exit within %v", name, limit)
	}
}

func (c *cluster) logs(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name].logs.String()
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, p := range c.procs {
		p.cmd.Process.Signal(syscall.SIGCONT)
		if name == "nginx" {
			// SIGTERM lets the master reap its workers; killing it
			// outright leaves them as zombies of pid 1.
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(3 * time.Second):
				syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			}
		} else {
			p.cmd.Process.Kill()
		}
		<-p.done
		if c.t.Failed() {
			c.t.Logf("--- %s log (last 40 lines) ---\n%s", name, tail(p.logs.String(), 40))
		}
	}
	if c.t.Failed() {
		if b, err := os.ReadFile(filepath.Join(c.dir, "nginx", "error.log")); err == nil {
			kinds := map[string]int{}
			for _, line := range strings.Split(string(b), "\n") {
				for _, k := range []string{"no live upstreams", "connect() failed", "upstream timed out", "prematurely closed"} {
					if strings.Contains(line, k) {
						kinds[k]++
					}
				}
			}
			c.t.Logf("--- nginx error.log: %v; last lines ---\n%s", kinds, tail(string(b), 10))
		}
	}
}

func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var _ = context.Background

// natsURL is the NATS server for the NATS bus variant: TEST_NATS_URL, or
// skip (fail under CI).
func natsURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("TEST_NATS_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("TEST_NATS_URL is not set; CI must run the NATS bus against a real server")
		}
		t.Skip("TEST_NATS_URL is not set: skipping the NATS bus variant")
	}
	return u
}
