-- textgate schema, version 8 (SQLite): the web UI's sign-in sessions, disabled users, and what
-- each user did with the inbound texts in their inbox.

-- A signed-in browser. The cookie holds a random token; only its SHA-256 is stored, so a copy
-- of the database signs nobody in. `csrf` is the token every form of the session carries.
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL,     -- the last request (written at most once a minute)
    expires_at INTEGER NOT NULL      -- the absolute end, whatever the use
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

-- A disabled user cannot sign in, and their API keys and e-mail address stop working; nothing
-- of theirs is removed.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;

ALTER TABLE inbound_designations ADD COLUMN read_at INTEGER;
ALTER TABLE inbound_designations ADD COLUMN archived_at INTEGER;
