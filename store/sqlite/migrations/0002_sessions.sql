-- Login sessions: only the SHA-256 of each token is kept.
CREATE TABLE IF NOT EXISTS chat_sessions (
    token_hash TEXT PRIMARY KEY,
    username   TEXT NOT NULL,
    expires_at INTEGER NOT NULL -- Unix milliseconds
);
