-- textgate schema, version 11 (PostgreSQL): no foreign keys on the rows every message writes.
-- PostgreSQL checks a foreign key per row written, with a row lock on the row it points to:
-- for messages.owner_id every concurrent request locked the same user row, and the check of
-- message_parts.message_id cost as much as the part's own insert. Nothing deletes users or
-- jobs, and the retention purge deletes a message's parts itself, as it always has on SQLite
-- (whose schema never enforced these keys), so they guarded nothing that happens.
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_owner_id_fkey;
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_job_id_fkey;
ALTER TABLE message_parts DROP CONSTRAINT IF EXISTS message_parts_message_id_fkey;
