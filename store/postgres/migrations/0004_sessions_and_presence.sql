-- Login sessions: only the SHA-256 of each token is kept.
CREATE TABLE IF NOT EXISTS chat_sessions (
    token_hash TEXT PRIMARY KEY,
    username   TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_sessions_expires ON chat_sessions (expires_at);

-- The cluster-wide online list: which users have sockets on which server,
-- and when each server last proved it is alive.
CREATE TABLE IF NOT EXISTS chat_servers (
    server_id    TEXT PRIMARY KEY,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS chat_presence (
    server_id TEXT NOT NULL,
    username  TEXT NOT NULL,
    since     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (server_id, username)
);
