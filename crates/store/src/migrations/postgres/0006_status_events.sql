-- textgate schema, version 6 (PostgreSQL): the events of status changes (status callbacks,
-- e-mail failure notices) are queued by the store's own statements, the same on both
-- databases (ops/messages.rs, queue_status_events), as SQLite's have been since its version 5.
-- Every textgate node must run this version or later once it is applied: older nodes relied on
-- these triggers.
DROP TRIGGER messages_callback ON messages;
DROP FUNCTION textgate_status_callback();
DROP TRIGGER messages_email_failure ON messages;
DROP FUNCTION textgate_email_failure();
