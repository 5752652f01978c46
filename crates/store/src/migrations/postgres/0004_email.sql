-- textgate schema, version 4 (PostgreSQL): see the SQLite version.
ALTER TABLE messages ADD COLUMN email_from TEXT;

CREATE FUNCTION textgate_email_failure() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status
       AND NEW.status IN ('undelivered', 'failed', 'expired') THEN
        INSERT INTO deliveries (channel, event, target, message_id, status, owner_id,
                                next_at, give_up_at, created_at)
        VALUES ('email', 'message.status', NEW.email_from, NEW.id, NEW.status, NEW.owner_id,
                now_ms, 0, now_ms);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_email_failure AFTER UPDATE OF status ON messages
FOR EACH ROW WHEN (NEW.email_from IS NOT NULL) EXECUTE FUNCTION textgate_email_failure();

-- Every attempt of a delivery (webhook POST or e-mail), with what the receiver answered.
CREATE TABLE delivery_attempts (
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    code        BIGINT,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
