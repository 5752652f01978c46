-- Bulk CSV jobs (issue 6). The jobs table of version 1 gets what an import needs to resume
-- after a restart (the file, the byte offset and line of the next row, the row number), and
-- each job message its spreadsheet row.
ALTER TABLE jobs ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
ALTER TABLE jobs ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN file TEXT;
ALTER TABLE jobs ADD COLUMN file_offset INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN file_line INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN next_row INTEGER NOT NULL DEFAULT 2;
ALTER TABLE jobs ADD COLUMN segments INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN error TEXT;
ALTER TABLE jobs ADD COLUMN paused_at INTEGER;
ALTER TABLE jobs ADD COLUMN imported_at INTEGER;
CREATE INDEX jobs_owner ON jobs (owner_id, id);
-- Imports to resume at start-up: few rows, so a partial index keeps the look-up free.
CREATE INDEX jobs_importing ON jobs (id) WHERE imported_at IS NULL;

ALTER TABLE messages ADD COLUMN job_row INTEGER;

-- Rows of a job that were not stored as messages, with the reason (for the results CSV):
-- kind 'rejected' (a bad row) or 'duplicate' (a number seen earlier in the file, dedupe=true).
CREATE TABLE job_rejects (
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    row     INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    number  TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (job_id, row)
) WITHOUT ROWID;
