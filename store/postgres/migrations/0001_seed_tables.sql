-- The seed's tables, as the Node server used them. IF NOT EXISTS keeps an
-- existing database exactly as it is: its rows, its columns, its types.
CREATE TABLE IF NOT EXISTS user_table (
    username TEXT PRIMARY KEY,
    password TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS chat_history (
    id       SERIAL PRIMARY KEY,
    content  TEXT,
    username TEXT
);
