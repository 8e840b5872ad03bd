package engineio

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/lesismal/nbio"
)

// nbio v1.6.8 loses a Stop that comes before a poller's goroutine has run:
// Engine.Start launches each poller with `go`, and the poller's loop begins
// by setting its shutdown flag to false (poller_epoll.go, readWriteLoop), so
// a Stop made in between is forgotten and Engine.Stop waits for that poller
// for ever, which spins on the stop event it never reads. Server.Close hung
// that way once in about ten runs of the package under load
// (TestCloseInOnOpen's cleanup); TestCloseRightAfterPollerStart makes it
// happen within a few start-close pairs without waitPollers. No upstream
// issue was found for it.
//
// waitPollers makes Start return only once every poller is in its loop: it
// hands each poller a connection of its own with a byte waiting, and waits
// until each byte has been read. A poller that has read once has passed
// the flag's reset, so a later Stop holds.
func waitPollers(nb *nbio.Engine, timeout time.Duration) error {
	n := nb.NPoller
	var probes []*probe
	defer func() {
		for _, p := range probes {
			p.close()
		}
	}()
	covered := make([]bool, n)
	left := n
	// nbio puts a connection on poller Hash() % NPoller (its descriptor);
	// descriptors are allotted lowest first, so a few cover every poller.
	for tries := 0; left > 0 && tries < 4*n+16; tries++ {
		conn, peer, err := socketPair()
		if err != nil {
			return err
		}
		c, err := nb.AddConn(conn) // takes conn's descriptor (a duplicate) and closes conn
		if err != nil {
			conn.Close()
			peer.Close()
			return err
		}
		p := &probe{nc: c, peer: peer, read: make(chan struct{})}
		i := c.Hash() % n
		if covered[i] {
			p.close()
			continue
		}
		c.SetSession(p)
		probes = append(probes, p)
		covered[i] = true
		left--
		if _, err := peer.Write([]byte{0}); err != nil {
			return err
		}
	}
	if left > 0 {
		return fmt.Errorf("nbio: no probe connection for %d of %d pollers", left, n)
	}
	deadline := time.After(timeout)
	for _, p := range probes {
		select {
		case <-p.read:
		case <-deadline:
			return fmt.Errorf("nbio: a poller did not start within %s", timeout)
		}
	}
	return nil
}

// probe is a connection given to nbio (nc) and the other end of its
// socket pair (peer); read is closed once nbio has read from nc.
type probe struct {
	nc   *nbio.Conn
	peer *os.File
	read chan struct{}
	once sync.Once
}

// onData is nbio's OnData for a probe, on its poller's goroutine.
func (p *probe) onData() { p.once.Do(func() { close(p.read) }) }

func (p *probe) close() {
	p.nc.Close()
	p.peer.Close()
}

// socketPair returns the two ends of a Unix stream socket pair.
func socketPair() (net.Conn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("nbio probe: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "nbio-probe")
	conn, err := net.FileConn(f) // a duplicate of fds[0]
	f.Close()
	peer := os.NewFile(uintptr(fds[1]), "nbio-probe-peer")
	if err != nil {
		peer.Close()
		return nil, nil, fmt.Errorf("nbio probe: %w", err)
	}
	return conn, peer, nil
}
