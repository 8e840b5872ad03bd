package failover

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// holdProxy forwards TCP connections from one chat server to nats-server.
// While held, what the chat server sends is read and kept instead of
// forwarded (nats-server's answers still flow): the state of a publish
// queued in the NATS client's buffer and not yet at the NATS server, made
// as long as the test needs. drop then discards what was kept and closes
// the connections, as a SIGKILL discards a process's unwritten buffer: the
// window of issue 14's lost acknowledged message, where a confirmed publish
// must not acknowledge and a queued one did.
type holdProxy struct {
	ln       net.Listener
	upstream string

	mu sync.Mutex
	// Fields below are guarded by mu.
	held  bool
	kept  []byte // what the chat server sent while held
	conns []net.Conn
}

func newHoldProxy(t *testing.T, upstream string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln, upstream: upstream}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
	})
	return p
}

func (p *holdProxy) addr() string { return p.ln.Addr().String() }

func (p *holdProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go func() { io.Copy(c, u); c.Close() }()
		go func() {
			defer u.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					p.mu.Lock()
					held := p.held
					if held {
						p.kept = append(p.kept, buf[:n]...)
					}
					p.mu.Unlock()
					if !held {
						if _, err := u.Write(buf[:n]); err != nil {
							return
						}
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// hold starts keeping what the chat server sends.
func (p *holdProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = true
	p.kept = nil
}

// drop ends a hold: it closes every connection, discards what was kept and
// returns how many message events (bus.KindMessage) were among it; new
// connections are forwarded again.
func (p *holdProxy) drop() (messages int) {
	p.closeAll()
	p.mu.Lock()
	defer p.mu.Unlock()
	messages = bytes.Count(p.kept, []byte(`"k":"message"`))
	p.held = false
	p.kept = nil
	return messages
}

func (p *holdProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
