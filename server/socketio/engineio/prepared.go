package engineio

// Prepared is one or more text message packets encoded once for any number
// of sessions: the broadcast path. It is immutable once built.
type Prepared struct {
	texts []string
	// frames are the server-to-client WebSocket text frames (header +
	// "4"+text), one per text, back to back: what every WebSocket
	// recipient is written, as it is.
	frames []byte
}

// Prepare encodes texts (message payloads, without the leading '4') once.
func Prepare(texts ...string) *Prepared {
	n := 0
	for _, t := range texts {
		n += 10 + 1 + len(t)
	}
	frames := make([]byte, 0, n)
	for _, t := range texts {
		frames = appendFrameHeader(frames, opText, 1+len(t))
		frames = append(frames, pktMessage)
		frames = append(frames, t...)
	}
	return &Prepared{texts: append([]string(nil), texts...), frames: frames}
}

// Texts returns the message payloads p was built from.
func (p *Prepared) Texts() []string { return p.texts }
