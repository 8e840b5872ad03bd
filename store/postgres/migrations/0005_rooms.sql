-- Rooms, direct messages, edits, read markers and search (issue 11).
-- Additive only: new tables, and new columns on chat_history whose
-- defaults make every existing row, and every row the Node server inserts
-- with its INSERT (content, username), a message of "general".

CREATE TABLE IF NOT EXISTS chat_rooms (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL,
    -- store.RoomNameKey(name) for public rooms, NULL for direct ones:
    -- the case-insensitive uniqueness of names.
    name_key   TEXT,
    kind       TEXT NOT NULL CHECK (kind IN ('public', 'direct')),
    created_by TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A direct room's two users, dm_a < dm_b; NULL for public rooms.
    dm_a       TEXT,
    dm_b       TEXT,
    CHECK ((kind = 'direct') = (dm_a IS NOT NULL AND dm_b IS NOT NULL AND dm_a < dm_b))
);
CREATE UNIQUE INDEX IF NOT EXISTS chat_rooms_name_key ON chat_rooms (name_key);
CREATE UNIQUE INDEX IF NOT EXISTS chat_rooms_direct ON chat_rooms (dm_a, dm_b) WHERE kind = 'direct';

-- General is id 1 in every database; the sequence continues after it.
INSERT INTO chat_rooms (id, name, name_key, kind)
    VALUES (1, 'general', 'general', 'public') ON CONFLICT (id) DO NOTHING;
SELECT setval(pg_get_serial_sequence('chat_rooms', 'id'), (SELECT max(id) FROM chat_rooms));

-- A constant default is stored once in the catalogue (PostgreSQL 11+):
-- adding the column neither rewrites the table nor touches its rows.
ALTER TABLE chat_history ADD COLUMN IF NOT EXISTS room_id BIGINT NOT NULL DEFAULT 1 REFERENCES chat_rooms (id);
ALTER TABLE chat_history ADD COLUMN IF NOT EXISTS edited_at TIMESTAMPTZ;
ALTER TABLE chat_history ADD COLUMN IF NOT EXISTS deleted_at TIMESTAMPTZ;
-- A room's history, pages and unread counts walk this index.
CREATE INDEX IF NOT EXISTS chat_history_room_id ON chat_history (room_id, id);
-- Full-text search. An expression index rather than a stored generated
-- column, which would rewrite every row of the seed's table. 'simple'
-- lower-cases words without stemming for any one language: chat is
-- multilingual. Queries must repeat this exact expression to use it.
CREATE INDEX IF NOT EXISTS chat_history_search
    ON chat_history USING GIN (to_tsvector('simple', coalesce(content, '')));

-- Members of public and direct rooms; General has none (everyone is in it).
CREATE TABLE IF NOT EXISTS chat_room_members (
    room_id   BIGINT NOT NULL REFERENCES chat_rooms (id),
    username  TEXT NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (room_id, username)
);
CREATE INDEX IF NOT EXISTS chat_room_members_user ON chat_room_members (username, room_id);

-- Last-read markers: the highest message id a user has seen in a room.
CREATE TABLE IF NOT EXISTS chat_read_markers (
    username  TEXT NOT NULL,
    room_id   BIGINT NOT NULL REFERENCES chat_rooms (id),
    last_read BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (username, room_id)
);

-- The client ids of edits and deletes already applied, so a resent one
-- is applied once (sends use chat_history.client_id for the same purpose).
CREATE TABLE IF NOT EXISTS chat_message_changes (
    username   TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (username, client_id)
);
