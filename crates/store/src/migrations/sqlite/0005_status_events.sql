-- textgate schema, version 5 (SQLite): the events of status changes are queued by the store's
-- own statements (see queue_status_events in ops/messages.rs), not by a trigger. SQLite runs a
-- trigger's program for every row an UPDATE OF status touches, before its WHEN is known to be
-- false, and that was a fifth of the writer's work per message. PostgreSQL dropped its own in version 6.
DROP TRIGGER messages_status_events;
