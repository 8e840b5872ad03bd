// Package timeouts bounds how long one client can make the server wait on
// it over plain HTTP: a request body that never finishes arriving. The
// Socket.IO endpoint keeps its own deadlines (package
// server/socketio/engineio) and is not wrapped.
//
// http.Server has no setting for it that leaves long requests alone:
// ReadTimeout covers the whole request, ReadHeaderTimeout stops at the
// headers. Without this package a client that sends headers announcing a
// 1,000-byte body and then 5 bytes holds a goroutine and a connection
// forever (net/http even waits on such a body after the handler returned,
// to reuse the connection).
package timeouts

import (
	"net/http"
	"time"
)

// Wrap returns next with a body deadline: an HTTP request that has a body
// (a Content-Length or chunked body) must arrive whole within body,
// counted from when its handler starts. After that its reads fail, the
// handler sees an error, and the connection is closed. Requests without a
// body get no read deadline. A zero body disables it.
func Wrap(next http.Handler, body time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if body > 0 && r.ContentLength != 0 {
			// An error here means the connection cannot take deadlines
			// (HTTP/2 streams do their own flow control); serve anyway.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(body))
		}
		next.ServeHTTP(w, r)
	})
}
