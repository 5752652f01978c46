-- textgate schema, version 5 (PostgreSQL): when each API key was last used (`GET /api/v1/keys`),
-- written at most once a minute per key and node (when a node first verifies the key).
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
