-- textgate schema, version 1 (SQLite). Times are milliseconds since the Unix epoch, UTC.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    email         TEXT,
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash   TEXT NOT NULL UNIQUE,
    label      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE jobs (
    id         INTEGER PRIMARY KEY,
    owner_id   INTEGER NOT NULL REFERENCES users (id),
    name       TEXT,
    state      TEXT NOT NULL,
    total      INTEGER NOT NULL DEFAULT 0,
    accepted   INTEGER NOT NULL DEFAULT 0,
    rejected   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    owner_id     INTEGER NOT NULL REFERENCES users (id),
    job_id       INTEGER REFERENCES jobs (id),
    recipient    TEXT NOT NULL,
    sender       TEXT,
    body         TEXT NOT NULL,
    encoding     TEXT NOT NULL,
    segments     INTEGER NOT NULL,
    status       TEXT NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    due_at       INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    lease_until  INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    device       TEXT,
    error_code   TEXT,
    error        TEXT,
    callback_url TEXT,
    reference    TEXT,
    created_at   INTEGER NOT NULL,
    sent_at      INTEGER,
    done_at      INTEGER
);
-- The queue: only rows waiting for a device are in these indexes, so they stay small however
-- large the history grows.
CREATE INDEX messages_queue ON messages (priority, due_at, id) WHERE status = 'queued';
CREATE INDEX messages_scheduled ON messages (due_at) WHERE status = 'scheduled';
CREATE INDEX messages_leased ON messages (lease_until) WHERE status = 'sending';
-- Sent messages still waiting for their receipts.
CREATE INDEX messages_sent ON messages (expires_at) WHERE status = 'sent';
CREATE INDEX messages_owner ON messages (owner_id, id);
CREATE INDEX messages_job ON messages (job_id, id) WHERE job_id IS NOT NULL;

-- One row per SMS part handed to a device: the device's id for it and its receipt.
CREATE TABLE message_parts (
    message_id    INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    part_no       INTEGER NOT NULL,
    device        TEXT NOT NULL,
    device_msg_id TEXT NOT NULL,
    status        TEXT NOT NULL,
    error_code    TEXT,
    submitted_at  INTEGER NOT NULL,
    done_at       INTEGER,
    PRIMARY KEY (message_id, part_no)
) WITHOUT ROWID; -- clustered on its key: one B-tree less to write per part
CREATE INDEX message_parts_device_id ON message_parts (device, device_msg_id);

CREATE TABLE inbound (
    id          INTEGER PRIMARY KEY,
    device      TEXT NOT NULL,
    sender      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    body        TEXT NOT NULL,
    encoding    TEXT NOT NULL,
    parts       INTEGER NOT NULL DEFAULT 1,
    partial     INTEGER NOT NULL DEFAULT 0,
    dedup_key   TEXT UNIQUE,
    received_at INTEGER NOT NULL
);

CREATE TABLE inbound_designations (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    inbound_id INTEGER NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, inbound_id)
);

CREATE TABLE idempotency (
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
);
