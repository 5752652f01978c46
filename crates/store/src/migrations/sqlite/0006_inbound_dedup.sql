-- textgate schema, version 6 (SQLite): the unique index on inbound.dedup_key holds only the
-- texts that have a key. A column's UNIQUE constraint indexes every row, NULLs included, so
-- each inbound text also wrote a page of that index in its commit (bench/smpp/run, inbound at
-- window 10: docs/benchmarks.md). SQLite cannot drop a column's constraint: the table is
-- rebuilt, keeping every id.
CREATE TABLE inbound_v6 (
    id          INTEGER PRIMARY KEY,
    device      TEXT NOT NULL,
    sender      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    body        TEXT NOT NULL,
    encoding    TEXT NOT NULL,
    parts       INTEGER NOT NULL DEFAULT 1,
    partial     INTEGER NOT NULL DEFAULT 0,
    dedup_key   TEXT,
    received_at INTEGER NOT NULL
);
INSERT INTO inbound_v6 (id, device, sender, recipient, body, encoding, parts, partial, dedup_key, received_at)
SELECT id, device, sender, recipient, body, encoding, parts, partial, dedup_key, received_at FROM inbound;
DROP TABLE inbound;
ALTER TABLE inbound_v6 RENAME TO inbound;
CREATE UNIQUE INDEX inbound_dedup_key ON inbound (dedup_key) WHERE dedup_key IS NOT NULL;
