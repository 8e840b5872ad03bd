-- The Node server checked names only in its memory, so its table may have no
-- unique constraint. Two processes sharing one database need the database to
-- refuse a second registration of a name. Start-up checks for duplicate rows
-- first and stops with their names instead of failing here.
CREATE UNIQUE INDEX IF NOT EXISTS user_table_username_unique ON user_table (username);
