package engineio

// Prepared is one or more text message packets encoded once for any number
// of sessions: the broadcast path. It is immutable once built.
type Prepared struct {
	texts []string
	// frames are the server-to-client WebSocket text frames (header +
	// "4"+text), one per text, back to back, written to every WebSocket
	// recipient as they are.
	frames []byte
}

// Prepare encodes texts (message packets, without the leading '4') once.
func Prepare(texts ...string) *Prepared {
	return &Prepared{texts: texts} // TODO frames
}
