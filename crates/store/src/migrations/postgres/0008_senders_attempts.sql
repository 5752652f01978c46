-- textgate schema, version 8 (PostgreSQL): the senders each user may send as, and the history
-- of a message's attempts that did not end in a send. As SQLite's version 9.
ALTER TABLE users ADD COLUMN senders TEXT NOT NULL DEFAULT '';

CREATE TABLE message_attempts (
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    attempt    BIGINT NOT NULL,
    device     TEXT,
    at         BIGINT NOT NULL,
    outcome    TEXT NOT NULL,
    code       TEXT,
    error      TEXT
);
CREATE INDEX message_attempts_message ON message_attempts (message_id);
