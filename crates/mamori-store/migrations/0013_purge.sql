-- The organization purge (DEL-3, DEL-5, DEL-7, AUD-3): the purge request with its lease, the
-- steps done, the `org.purge_started` webhook owed to each app enabled for the organization
-- with every delivery attempt, and each app's webhook URL. These rows hold IDs and times only:
-- they are the evidence that the purge ran, and are kept after it.

ALTER TABLE apps ADD COLUMN webhook_url TEXT;

CREATE TABLE org_purges (
    org_id TEXT PRIMARY KEY,
    requested_at BIGINT NOT NULL,
    due_by BIGINT NOT NULL,
    -- The contract administrator kept despite the purge (DEL-5): an account ID; the name and
    -- contact stay in that account's own row, sealed under the account's key.
    contact_account_id TEXT,
    lease_owner TEXT,
    lease_until BIGINT,
    finished_at BIGINT
);
CREATE INDEX org_purges_open ON org_purges (finished_at, requested_at);

-- One row per step; `done_at` NULL while a step that runs in batches is under way.
CREATE TABLE purge_steps (
    org_id TEXT NOT NULL,
    step TEXT NOT NULL,
    done_at BIGINT,
    row_count BIGINT NOT NULL,
    PRIMARY KEY (org_id, step)
);

CREATE TABLE purge_webhooks (
    org_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    delivered_at BIGINT,
    gave_up_at BIGINT,
    confirmed_at BIGINT,
    PRIMARY KEY (org_id, app_id)
);
CREATE INDEX purge_webhooks_due ON purge_webhooks (delivered_at, next_attempt_at);

CREATE TABLE purge_webhook_attempts (
    org_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (org_id, app_id, attempt)
);
