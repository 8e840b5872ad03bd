package socketio

import (
	"errors"
	"fmt"

	"github.com/chatd/chat/server/socketio/engineio"
)

var errPreparedBinary = errors.New("socketio: binary arguments cannot be prepared")

// PrepareEvent encodes an event of the main namespace once, for
// Socket.EmitPrepared to any number of sockets: a broadcast costs one
// encoding, and WebSocket recipients get the same ready frame.
func PrepareEvent(event string, args ...any) (*engineio.Prepared, error) {
	t, err := preparedText(event, args)
	if err != nil {
		return nil, err
	}
	return engineio.Prepare(t), nil
}

// PrepareEvents encodes several events at once, each given as its name
// followed by its arguments; they are delivered together, in order.
func PrepareEvents(events ...[]any) (*engineio.Prepared, error) {
	texts := make([]string, 0, len(events))
	for i, ev := range events {
		if len(ev) == 0 {
			return nil, fmt.Errorf("socketio: event %d has no name", i)
		}
		name, ok := ev[0].(string)
		if !ok {
			return nil, fmt.Errorf("socketio: event %d: name is a %T, not a string", i, ev[0])
		}
		t, err := preparedText(name, ev[1:])
		if err != nil {
			return nil, err
		}
		texts = append(texts, t)
	}
	return engineio.Prepare(texts...), nil
}

func preparedText(event string, args []any) (string, error) {
	e, err := encodePacket(typeEvent, "/", false, 0, event, args)
	if err != nil {
		return "", err
	}
	if len(e.attachments) > 0 {
		return "", errPreparedBinary
	}
	return e.text, nil
}
