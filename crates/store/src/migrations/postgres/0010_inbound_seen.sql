-- textgate schema, version 10 (PostgreSQL): the content keys of inbound texts from devices
-- that recognise a redelivery by its content within a window (an SMPP text carries no id).
-- As SQLite's version 11.
CREATE TABLE inbound_seen (
    key TEXT PRIMARY KEY,
    at  BIGINT NOT NULL
);
CREATE INDEX inbound_seen_at ON inbound_seen (at);
