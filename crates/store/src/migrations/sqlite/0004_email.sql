-- textgate schema, version 4 (SQLite): texts that came from e-mail remember who sent them,
-- so that an answer to such a text, and a notice when it fails, go back to that address.
ALTER TABLE messages ADD COLUMN email_from TEXT;

-- A failure notice for every text from e-mail that ends undelivered, failed or expired, in
-- the same transaction as that status (the mailer decides whether to send it).
CREATE TRIGGER messages_email_failure AFTER UPDATE OF status ON messages
FOR EACH ROW WHEN NEW.email_from IS NOT NULL AND NEW.status <> OLD.status
    AND NEW.status IN ('undelivered', 'failed', 'expired')
BEGIN
    INSERT INTO deliveries (channel, event, target, message_id, status, owner_id,
                            next_at, give_up_at, created_at)
    VALUES ('email', 'message.status', NEW.email_from, NEW.id, NEW.status, NEW.owner_id,
            CAST(unixepoch('subsec') * 1000 AS INTEGER), 0,
            CAST(unixepoch('subsec') * 1000 AS INTEGER));
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
