-- Edits and deletes by time (store.RoomMessages.ChangedSince): a server
-- whose bus connection was down replays those made meanwhile. Additive
-- only: two partial indexes over the rows ever edited or deleted.
CREATE INDEX IF NOT EXISTS chat_history_edited_at
    ON chat_history (edited_at) WHERE edited_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS chat_history_deleted_at
    ON chat_history (deleted_at) WHERE deleted_at IS NOT NULL;
