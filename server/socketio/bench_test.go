package socketio

import (
	"testing"
	"unsafe"
)

// TestSizes keeps the per-connection structures small: they are what an
// idle connection costs this package (plus the handlers set on it).
func TestSizes(t *testing.T) {
	sock, c := unsafe.Sizeof(Socket{}), unsafe.Sizeof(conn{})
	t.Logf("Socket %d bytes, conn %d bytes", sock, c)
	if sock > 256 || c > 128 {
		t.Errorf("Socket %d bytes (want <= 256), conn %d bytes (want <= 128)", sock, c)
	}
}

var sinkText string

func BenchmarkDecodeEvent(b *testing.B) {
	in := []byte(`2123["send message",{"msg":"hello there, how are you doing today?","id":42}]`)
	b.ReportAllocs()
	for b.Loop() {
		p, err := decodePacket(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := eventArgs(p.data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeEvent(b *testing.B) {
	msg := map[string]any{"msg": "hello there, how are you doing today?", "user": "alice", "id": 42, "time": "2026-12-04T14:47:38.042544Z"}
	b.ReportAllocs()
	for b.Loop() {
		e, err := encodePacket(typeEvent, "/", false, 0, "new message", []any{msg})
		if err != nil {
			b.Fatal(err)
		}
		sinkText = e.text
	}
}

func BenchmarkPrepareEvent(b *testing.B) {
	msg := map[string]any{"msg": "hello there, how are you doing today?", "user": "alice", "id": 42, "time": "2026-12-04T14:47:38.042544Z"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PrepareEvent("new message", msg); err != nil {
			b.Fatal(err)
		}
	}
}
