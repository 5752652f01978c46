-- textgate schema, version 9 (SQLite): the senders each user may send as, and the history of
-- a message's attempts that did not end in a send.

-- The sender ids a user may send as, one per line, as `Sender` writes them (E.164 with `+`,
-- a short code, or an alphanumeric name); the first is used when a text names none. Empty:
-- any sender.
ALTER TABLE users ADD COLUMN senders TEXT NOT NULL DEFAULT '';

-- One row per attempt that a device refused or that a stopped worker left behind: which
-- device, when, and why. The attempt that was sent is in message_parts; together they make
-- the message's timeline. Written only off the fast path (a retry, a failure, a lost lease).
CREATE TABLE message_attempts (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,
    device     TEXT,
    at         INTEGER NOT NULL,
    outcome    TEXT NOT NULL,         -- retry | failed | expired | lease
    code       TEXT,
    error      TEXT
);
CREATE INDEX message_attempts_message ON message_attempts (message_id);
