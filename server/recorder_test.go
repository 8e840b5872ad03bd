package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/chatd/chat/server/socketio/engineio"
)

// recorder is a socket that records what the hub gives it: each write as
// the list of packets it carried.
type recorder struct {
	mu     sync.Mutex
	writes [][]string
	// before, if set, runs before each write is recorded (outside mu).
	before func()
}

func (r *recorder) Emit(event string, args ...any) error {
	b, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return err
	}
	r.record([]string{"2" + string(b)})
	return nil
}

func (r *recorder) EmitPrepared(p *engineio.Prepared) { r.record(p.Texts()) }

func (r *recorder) Disconnect() {}

func (r *recorder) record(texts []string) {
	if r.before != nil {
		r.before()
	}
	r.mu.Lock()
	r.writes = append(r.writes, texts)
	r.mu.Unlock()
}

// messages returns the `new message` payloads received, in order.
func (r *recorder) messages() []wireMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []wireMessage
	for _, w := range r.writes {
		for _, t := range w {
			var ev []json.RawMessage
			if err := json.Unmarshal([]byte(strings.TrimPrefix(t, "2")), &ev); err != nil || len(ev) != 2 || string(ev[0]) != `"new message"` {
				continue
			}
			var m wireMessage
			if json.Unmarshal(ev[1], &m) == nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// ids returns the ids of the messages received, in order.
func (r *recorder) ids() []int64 {
	var ids []int64
	for _, m := range r.messages() {
		ids = append(ids, m.ID)
	}
	return ids
}

// writeCount returns how many writes the socket got.
func (r *recorder) writeCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.writes)
}

// newTestConn returns a conn on a recorder, joined to h.
func newTestConn(h *hub) (*conn, *recorder) {
	r := &recorder{}
	c := &conn{sock: r, base: discardLogger()}
	h.join(c)
	return c, r
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
