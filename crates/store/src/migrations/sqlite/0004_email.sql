-- textgate schema, version 4 (SQLite): texts that came from e-mail remember who sent them,
-- so that an answer to such a text, and a notice when it fails, go back to that address.
ALTER TABLE messages ADD COLUMN email_from TEXT;

-- Events of a message's status changes, queued in the same transaction as the change,
-- whichever path made it (device outcome, receipt, expiry, cancel):
-- - a status callback for a message sent with a callback_url (a message that goes from
--   sending to delivered in one step still gets its 'sent' event first);
-- - a failure notice for a text from e-mail that ends undelivered, failed or expired (the
--   mailer decides whether to send it).
-- One trigger, not one per event: every trigger costs SQLite some work on each row an UPDATE
-- touches, and a million-row job updates each of its rows twice.
CREATE TRIGGER messages_status_events AFTER UPDATE OF status ON messages
FOR EACH ROW WHEN (NEW.callback_url IS NOT NULL OR NEW.email_from IS NOT NULL)
    AND NEW.status <> OLD.status AND NEW.status NOT IN ('queued', 'scheduled', 'sending')
BEGIN
    INSERT INTO deliveries (channel, event, target, message_id, status, owner_id, api_key_id,
                            next_at, give_up_at, created_at)
    SELECT 'webhook', 'message.status', NEW.callback_url, NEW.id, 'sent', NEW.owner_id,
           NEW.api_key_id, CAST(unixepoch('subsec') * 1000 AS INTEGER), 0,
           CAST(unixepoch('subsec') * 1000 AS INTEGER)
    WHERE NEW.callback_url IS NOT NULL AND OLD.status = 'sending'
      AND NEW.status IN ('delivered', 'undelivered');
    INSERT INTO deliveries (channel, event, target, message_id, status, owner_id, api_key_id,
                            next_at, give_up_at, created_at)
    SELECT 'webhook', 'message.status', NEW.callback_url, NEW.id, NEW.status, NEW.owner_id,
           NEW.api_key_id, CAST(unixepoch('subsec') * 1000 AS INTEGER), 0,
           CAST(unixepoch('subsec') * 1000 AS INTEGER)
    WHERE NEW.callback_url IS NOT NULL;
    INSERT INTO deliveries (channel, event, target, message_id, status, owner_id,
                            next_at, give_up_at, created_at)
    SELECT 'email', 'message.status', NEW.email_from, NEW.id, NEW.status, NEW.owner_id,
           CAST(unixepoch('subsec') * 1000 AS INTEGER), 0,
           CAST(unixepoch('subsec') * 1000 AS INTEGER)
    WHERE NEW.email_from IS NOT NULL AND NEW.status IN ('undelivered', 'failed', 'expired');
END;

-- Every attempt of a delivery (webhook POST or e-mail), with what the receiver answered.
CREATE TABLE delivery_attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    code        INTEGER,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
