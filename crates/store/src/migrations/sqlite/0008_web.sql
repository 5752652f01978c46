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

-- The outbox filtered by a failure: the few messages in each of these statuses, by owner and
-- newest first (the common statuses are found by reading the newest messages).
CREATE INDEX messages_undelivered ON messages (owner_id, id) WHERE status = 'undelivered';
CREATE INDEX messages_failed ON messages (owner_id, id) WHERE status = 'failed';
CREATE INDEX messages_expired ON messages (owner_id, id) WHERE status = 'expired';

-- Conversations in the inbox: a user's texts from one number.
CREATE INDEX inbound_sender ON inbound (sender, id);

ALTER TABLE inbound_designations ADD COLUMN read_at INTEGER;
ALTER TABLE inbound_designations ADD COLUMN archived_at INTEGER;

-- The address book: contacts and groups, a user's own (owner_id) or shared by everyone
-- (owner_id NULL, kept by administrators). `fields` is a JSON object of the contact's other
-- fields, which templates use like CSV columns.
CREATE TABLE contacts (
    id         INTEGER PRIMARY KEY,
    owner_id   INTEGER REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    number     TEXT NOT NULL,
    fields     TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX contacts_number ON contacts (coalesce(owner_id, 0), number);
CREATE INDEX contacts_name ON contacts (owner_id, name);

CREATE TABLE contact_groups (
    id         INTEGER PRIMARY KEY,
    owner_id   INTEGER REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX contact_groups_name ON contact_groups (coalesce(owner_id, 0), name);

CREATE TABLE group_members (
    group_id   INTEGER NOT NULL REFERENCES contact_groups (id) ON DELETE CASCADE,
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, contact_id)
);
CREATE INDEX group_members_contact ON group_members (contact_id);

-- Devices an administrator disabled while the server runs (the configuration's `enabled`
-- is the other switch): nothing is sent through them until they are enabled again, on every
-- node.
CREATE TABLE device_controls (
    name        TEXT PRIMARY KEY,
    disabled_at INTEGER NOT NULL,
    disabled_by TEXT NOT NULL
);
