-- textgate schema, version 7 (PostgreSQL): the web UI's sign-in sessions, disabled users, and
-- what each user did with the inbound texts in their inbox. As SQLite's version 8.
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

ALTER TABLE users ADD COLUMN disabled_at BIGINT;

ALTER TABLE inbound_designations ADD COLUMN read_at BIGINT;
ALTER TABLE inbound_designations ADD COLUMN archived_at BIGINT;
