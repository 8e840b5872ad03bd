// Package server is the chat's Socket.IO server: the seed's four events
// (register, login, logout, send message) and its broadcasts (load all
// messages, get users, new message, reload), served over WebSocket and HTTP
// long-polling to stock socket.io-client 2.x and 4.x, plus the extensions
// documented in the README.
//
// Concurrency: the Socket.IO library runs one socket's handlers one at a
// time, different sockets' handlers in parallel, and may fire a socket's
// disconnect while one of its handlers still runs. Shared state therefore
// has exactly one owner each: the hub owns the set of connected sockets and
// delivery to them, the online list owns who is logged in, memberships owns
// which local sockets each room's messages go to, and a per-socket session
// owns that socket's user.
//
// Rooms (general, public rooms, direct rooms) are a property of delivery:
// Server.deliver is the one way a message reaches sockets, and it sends
// general's to every socket as the seed's `new message` and any other
// room's as `room message` to the local sockets of its members only. None of them holds a lock while calling
// the store.
package server
