-- Additive columns with defaults: the Node server can still insert rows
-- (content, username) and read them. Existing rows get the time of this
-- migration, since the seed never recorded when a message was sent.
ALTER TABLE chat_history ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE chat_history ADD COLUMN IF NOT EXISTS client_id TEXT;

-- A client's resend of one message is stored once, whichever server gets it.
CREATE UNIQUE INDEX IF NOT EXISTS chat_history_client_id
    ON chat_history (username, client_id) WHERE client_id IS NOT NULL;
