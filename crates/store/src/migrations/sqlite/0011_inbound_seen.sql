-- textgate schema, version 11 (SQLite): the content keys of inbound texts from devices that
-- recognise a redelivery by its content within a window (an SMPP text carries no id). As
-- PostgreSQL's version 10.
CREATE TABLE inbound_seen (
    key TEXT PRIMARY KEY,
    at  INTEGER NOT NULL
);
CREATE INDEX inbound_seen_at ON inbound_seen (at);
