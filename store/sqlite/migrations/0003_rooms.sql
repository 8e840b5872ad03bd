-- Rooms, direct messages, edits, read markers and search (issue 11).
-- Additive only: new tables, and new columns on chat_history whose
-- defaults put every existing row in "general".

CREATE TABLE IF NOT EXISTS chat_rooms (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    -- store.RoomNameKey(name) for public rooms, NULL for direct ones.
    name_key   TEXT UNIQUE,
    kind       TEXT NOT NULL CHECK (kind IN ('public', 'direct')),
    created_by TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    -- A direct room's two users, dm_a < dm_b; NULL for public rooms.
    dm_a       TEXT,
    dm_b       TEXT,
    CHECK ((kind = 'direct') = (dm_a IS NOT NULL AND dm_b IS NOT NULL AND dm_a < dm_b))
);
CREATE UNIQUE INDEX IF NOT EXISTS chat_rooms_direct ON chat_rooms (dm_a, dm_b) WHERE kind = 'direct';
INSERT OR IGNORE INTO chat_rooms (id, name, name_key, kind) VALUES (1, 'general', 'general', 'public');

-- No REFERENCES: SQLite refuses a foreign key on an added column with a
-- non-NULL default. The store checks rooms before writing.
ALTER TABLE chat_history ADD COLUMN room_id INTEGER NOT NULL DEFAULT 1;
ALTER TABLE chat_history ADD COLUMN edited_at INTEGER; -- Unix milliseconds
ALTER TABLE chat_history ADD COLUMN deleted_at INTEGER; -- Unix milliseconds
CREATE INDEX IF NOT EXISTS chat_history_room_id ON chat_history (room_id, id);

CREATE TABLE IF NOT EXISTS chat_room_members (
    room_id   INTEGER NOT NULL REFERENCES chat_rooms (id),
    username  TEXT NOT NULL,
    joined_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (room_id, username)
);
CREATE INDEX IF NOT EXISTS chat_room_members_user ON chat_room_members (username, room_id);

CREATE TABLE IF NOT EXISTS chat_read_markers (
    username  TEXT NOT NULL,
    room_id   INTEGER NOT NULL REFERENCES chat_rooms (id),
    last_read INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (username, room_id)
);

CREATE TABLE IF NOT EXISTS chat_message_changes (
    username   TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (username, client_id)
);

-- Full-text search: an external-content FTS5 index over chat_history,
-- kept in step by triggers. unicode61 folds case and, with
-- remove_diacritics 2, accents ("cafe" finds "café").
CREATE VIRTUAL TABLE IF NOT EXISTS chat_history_fts USING fts5(
    content, content = 'chat_history', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chat_history_fts_insert AFTER INSERT ON chat_history BEGIN
    INSERT INTO chat_history_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER IF NOT EXISTS chat_history_fts_delete AFTER DELETE ON chat_history BEGIN
    INSERT INTO chat_history_fts (chat_history_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER IF NOT EXISTS chat_history_fts_update AFTER UPDATE OF content ON chat_history BEGIN
    INSERT INTO chat_history_fts (chat_history_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO chat_history_fts (rowid, content) VALUES (new.id, new.content);
END;
-- Index the rows written before this migration.
INSERT INTO chat_history_fts (chat_history_fts) VALUES ('rebuild');
