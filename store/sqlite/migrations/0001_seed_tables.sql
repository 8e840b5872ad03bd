-- The seed's two tables, with the same names and columns as the Node
-- server's PostgreSQL schema, so one mental model covers both stores.
CREATE TABLE IF NOT EXISTS user_table (
    username TEXT NOT NULL PRIMARY KEY,
    password TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS chat_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    content    TEXT NOT NULL,
    username   TEXT NOT NULL,
    -- Unix milliseconds; SQLite has no timestamp type.
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    client_id  TEXT
);

-- A client's resend of one message is stored once (see store.Messages).
CREATE UNIQUE INDEX IF NOT EXISTS chat_history_client_id
    ON chat_history (username, client_id) WHERE client_id IS NOT NULL;
