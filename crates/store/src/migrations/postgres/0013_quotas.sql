-- textgate schema, version 13: quotas. A user's own limits (NULL: the [quotas] defaults,
-- 0: none), and the texts each user was accepted per UTC day (`d2026-12-06`) and month
-- (`m2026-12`), counted as they are accepted.
ALTER TABLE users ADD COLUMN quota_daily BIGINT;
ALTER TABLE users ADD COLUMN quota_monthly BIGINT;
ALTER TABLE users ADD COLUMN quota_rate BIGINT;
CREATE TABLE quota_usage (
    user_id BIGINT NOT NULL,
    period  TEXT NOT NULL,
    texts   BIGINT NOT NULL,
    PRIMARY KEY (user_id, period)
);
