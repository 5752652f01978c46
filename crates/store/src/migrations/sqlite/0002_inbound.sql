-- textgate schema, version 2 (SQLite): inbound routing, opt-out, webhooks and status callbacks.

-- Where a message came from: NULL = the HTTP API; 'reply' = an inbound rule's automatic
-- reply; 'optout' = an opt-out or opt-in confirmation, which goes out even to a number on
-- the suppression list. Other parts of textgate add their own names.
ALTER TABLE messages ADD COLUMN origin TEXT;
-- The API key the message was sent with: its own webhook secret signs the status callbacks.
ALTER TABLE messages ADD COLUMN api_key_id INTEGER;
-- Conversations: who last wrote to a number (an inbound reply from it is shown to them).
-- Bulk-job rows are left out: a million random numbers would make every job import rewrite
-- pages all over this index (bench/jobs/run, 1M rows: 37 s with it whole); replies
-- to a mass mailing are the inbound rules' business, not one person's conversation.
CREATE INDEX messages_recipient ON messages (recipient, created_at) WHERE job_id IS NULL;

-- A secret that signs the status callbacks of messages sent with this key.
ALTER TABLE api_keys ADD COLUMN webhook_secret TEXT;

-- Numbers that asked not to be texted (STOP); texts to them fail until they opt back in.
CREATE TABLE suppressions (
    number     TEXT PRIMARY KEY,
    source     TEXT NOT NULL,      -- 'keyword' (they texted STOP) or 'api'
    note       TEXT,
    created_at INTEGER NOT NULL
);

-- Webhook POSTs and e-mail forwards still to make, made, or given up (the dead letters).
CREATE TABLE deliveries (
    id          INTEGER PRIMARY KEY,
    channel     TEXT NOT NULL,     -- 'webhook' or 'email'
    event       TEXT NOT NULL,     -- 'message.inbound' or 'message.status'
    target      TEXT NOT NULL,     -- the URL, or the e-mail addresses separated by commas
    inbound_id  INTEGER REFERENCES inbound (id) ON DELETE CASCADE,
    message_id  INTEGER REFERENCES messages (id) ON DELETE CASCADE,
    status      TEXT,              -- message.status: the status the event reports
    owner_id    INTEGER,           -- who may see it besides admins (the message's owner)
    api_key_id  INTEGER,           -- message.status: the key whose secret signs it
    state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,  -- when it is due (or, while being sent, when its lease ends)
    give_up_at  INTEGER NOT NULL,  -- retried until then, then dead
    last_code   INTEGER,           -- the last HTTP status answered
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    done_at     INTEGER
);
CREATE INDEX deliveries_due ON deliveries (channel, next_at) WHERE state = 'pending';
CREATE INDEX deliveries_state ON deliveries (state, id);

-- Status callbacks are queued by a trigger on messages: see 0004_email.sql, which makes one
-- trigger of them and of the e-mail failure notices.
