package sioclient

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsTransport is Engine.IO over a WebSocket: one packet per text frame.
type wsTransport struct {
	ws   *websocket.Conn
	wmu  sync.Mutex // serialises writes to ws
	once sync.Once
}

func dialWebSocket(ctx context.Context, base string, opts Options) (*wsTransport, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	u.Path = "/socket.io/"
	u.RawQuery = "EIO=4&transport=websocket"
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 4096}
	if opts.LocalAddr != "" {
		nd, err := localDialer(opts.LocalAddr)
		if err != nil {
			return nil, err
		}
		d.NetDialContext = nd.DialContext
	}
	ws, resp, err := d.DialContext(ctx, u.String(), opts.Header)
	if err != nil {
		if resp != nil {
			body := make([]byte, 200)
			n, _ := io.ReadFull(resp.Body, body)
			resp.Body.Close()
			return nil, fmt.Errorf("sioclient: dial: %w: %s %q", err, resp.Status, body[:n])
		}
		return nil, fmt.Errorf("sioclient: dial: %w", err)
	}
	return &wsTransport{ws: ws}, nil
}

// localDialer connects from the local IP address ip.
func localDialer(ip string) (*net.Dialer, error) {
	a := net.ParseIP(ip)
	if a == nil {
		return nil, fmt.Errorf("sioclient: bad local address %q", ip)
	}
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: a}, Timeout: 10 * time.Second}, nil
}

func (t *wsTransport) read(deadline time.Time) (string, error) {
	t.ws.SetReadDeadline(deadline)
	_, msg, err := t.ws.ReadMessage()
	return string(msg), err
}

func (t *wsTransport) write(s string) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return t.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

func (t *wsTransport) close() {
	t.once.Do(func() {
		t.wmu.Lock()
		t.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		t.wmu.Unlock()
		t.ws.Close()
	})
}
