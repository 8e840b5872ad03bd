package loadgen

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"syscall"
	"time"
)

// evloop reads the WebSocket connections handed to it with epoll
// (level-triggered): per ready socket one read(2) into a shared buffer,
// frames parsed in place. One goroutine per loop owns its connections'
// read state; writes (pongs, sends) take the connection's wmu.
type evloop struct {
	r      *run
	epfd   int
	file   *os.File // epfd, registered with Go's netpoller
	rc     syscall.RawConn
	events []syscall.EpollEvent
	addCh  chan *client
	stop   chan struct{}
	done   chan struct{}

	conns []*client // by descriptor
	buf   []byte
	now   int64
}

func fastRand() uint32 { return mrand.Uint32() }

func newEvloop(r *run) (*evloop, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	// The epoll descriptor is itself pollable: Go's netpoller wakes the
	// loop when it has events, so the loop never blocks a thread in
	// epoll_wait (which costs a P handoff and sysmon wakeups each time).
	f := os.NewFile(uintptr(fd), "loadgen-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &evloop{r: r, epfd: fd, file: f, rc: rc, addCh: make(chan *client, 1024), stop: make(chan struct{}), done: make(chan struct{}),
		buf: make([]byte, 64<<10), events: make([]syscall.EpollEvent, 512)}
	go l.loop()
	return l, nil
}

// add hands c (connected, handshakes done) to the loop.
func (l *evloop) add(c *client) {
	select {
	case l.addCh <- c:
	case <-l.done:
		syscall.Close(c.fd)
	}
}

// shutdown closes every connection of the loop and ends it (bounded).
func (l *evloop) shutdown() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
	}
}

// loopTick bounds how long new connections wait to be registered and how
// late the loop notices shutdown.
const loopTick = 20 * time.Millisecond

func (l *evloop) loop() {
	defer close(l.done)
	defer l.file.Close()
	lastSweep := time.Now()
	for {
		for drained := false; !drained; {
			select {
			case c := <-l.addCh:
				l.register(c)
			default:
				drained = true
			}
		}
		select {
		case <-l.stop:
			l.closeAll()
			return
		default:
		}
		if time.Since(lastSweep) > time.Second {
			lastSweep = time.Now()
			l.sweep()
		}
		l.file.SetReadDeadline(time.Now().Add(loopTick))
		// poll runs until the epoll set has nothing ready, then parks
		// in the netpoller until it has, or the deadline passes.
		err := l.rc.Read(l.poll)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			l.r.noteErr("epoll", err)
			time.Sleep(loopTick)
		}
	}
}

// poll is the RawConn.Read callback: it handles every ready socket and
// returns false (wait) once epoll_wait(0) finds none.
func (l *evloop) poll(fd uintptr) bool {
	for {
		n, err := rawEpollPoll(int(fd), l.events)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			l.r.noteErr("epoll", err)
			return true
		}
		if n <= 0 {
			return false
		}
		l.now = l.r.now()
		for i := 0; i < n; i++ {
			fd := int(l.events[i].Fd)
			if fd < len(l.conns) && l.conns[fd] != nil {
				l.readable(l.conns[fd])
			}
		}
	}
}

func (l *evloop) register(c *client) {
	for c.fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*client, max(len(l.conns), 1024))...)
	}
	l.conns[c.fd] = c
	c.lastRead = l.r.now()
	// Frames that arrived with the handshake.
	if len(c.pend) > 0 {
		data := c.pend
		c.pend = nil
		if err := l.consume(c, data, false); err != nil {
			l.kill(c, err)
			return
		}
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		l.kill(c, fmt.Errorf("epoll_ctl: %w", err))
	}
}

var errEOF = errors.New("connection closed by the server (EOF)")

func (l *evloop) readable(c *client) {
	var data []byte
	inPend := len(c.pend) > 0
	if inPend {
		// The rest of a split frame: read after what we have.
		if cap(c.pend)-len(c.pend) < 16<<10 {
			np := make([]byte, len(c.pend), max(2*cap(c.pend), len(c.pend)+64<<10))
			copy(np, c.pend)
			c.pend = np
		}
		n, err := rawRead(c.fd, c.pend[len(c.pend):cap(c.pend)])
		if done := l.readErr(c, n, err); done {
			return
		}
		c.pend = c.pend[:len(c.pend)+n]
		data = c.pend
	} else {
		n, err := rawRead(c.fd, l.buf)
		if done := l.readErr(c, n, err); done {
			return
		}
		data = l.buf[:n]
	}
	c.lastRead = l.now
	if err := l.consume(c, data, inPend); err != nil {
		l.kill(c, err)
	}
}

// readErr handles the outcome of read(2); it reports whether there is
// nothing to parse.
func (l *evloop) readErr(c *client, n int, err error) bool {
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return true
	case err != nil:
		l.kill(c, fmt.Errorf("read: %w", err))
		return true
	case n == 0:
		l.kill(c, errEOF)
		return true
	}
	return false
}

// consume parses the frames in data and keeps an incomplete tail in
// c.pend (data is c.pend itself when inPend).
func (l *evloop) consume(c *client, data []byte, inPend bool) error {
	used, err := parseFrames(data, func(fin bool, op byte, p []byte) error { return l.frame(c, fin, op, p) })
	if err != nil {
		return err
	}
	rest := data[used:]
	switch {
	case len(rest) == 0 && cap(c.pend) > 64<<10:
		c.pend = nil
	case len(rest) == 0:
		c.pend = c.pend[:0]
	case inPend:
		c.pend = c.pend[:copy(c.pend, rest)]
	default:
		c.pend = append(c.pend[:0], rest...)
	}
	return nil
}

func (l *evloop) frame(c *client, fin bool, op byte, p []byte) error {
	switch op {
	case opText, opBin, opCont:
		if op != opCont && len(c.frag) > 0 {
			return errFrame
		}
		if !fin || len(c.frag) > 0 {
			c.frag = append(c.frag, p...)
			if !fin {
				return nil
			}
			p = c.frag
			defer func() { c.frag = nil }()
		}
		reply, err := c.handle(p)
		if err != nil {
			return err
		}
		if reply != nil {
			if d := l.r.cfg.PongDelay; d > 0 {
				time.AfterFunc(d, func() { c.writeText(reply) })
				return nil
			}
			return c.writeText(reply)
		}
	case opPing:
		return c.writeControl(opPong, p)
	case opClose:
		return errors.New("websocket close frame from the server")
	}
	return nil
}

// sweep ends connections that heard nothing for longer than the server's
// heartbeat allows.
func (l *evloop) sweep() {
	now := l.r.now()
	for _, c := range l.conns {
		if c != nil && time.Duration(now-c.lastRead) > c.silence {
			l.kill(c, fmt.Errorf("nothing received for %s (no ping)", time.Duration(now-c.lastRead).Round(time.Millisecond)))
		}
	}
}

// kill closes c's socket and records why, unless the run is ending.
func (l *evloop) kill(c *client, err error) {
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	if c.fd < len(l.conns) && l.conns[c.fd] == c {
		l.conns[c.fd] = nil
	}
	c.wmu.Lock()
	if !c.closed {
		c.closed = true
		syscall.Close(c.fd)
	}
	c.wmu.Unlock()
	l.r.onDead(c, err)
}

func (l *evloop) closeAll() {
	for _, c := range l.conns {
		if c != nil {
			l.kill(c, errClosed)
		}
	}
	for {
		select {
		case c := <-l.addCh:
			c.wmu.Lock()
			c.closed = true
			syscall.Close(c.fd)
			c.wmu.Unlock()
		default:
			return
		}
	}
}

// writeControl sends a control frame (the pong to a WebSocket ping).
func (c *client) writeControl(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return errClosed
	}
	f := appendFrame(nil, op, p, maskKey())
	_, err := rawWrite(c.fd, f)
	return err
}
