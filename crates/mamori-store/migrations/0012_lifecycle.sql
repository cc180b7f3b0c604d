-- Data lifecycle (issue 6, DEL-1, DEL-2, DEL-6): the contract state of each organization, its
-- lifecycle state with the concrete dates of each step, and the history of contract events.
-- The history is exempt from deletion (DEL-5): a purge never touches `org_contract_events`.

CREATE TABLE org_lifecycle (
    org_id TEXT PRIMARY KEY,
    -- active, trial_expired, suspended, deleted, purging, purged (mirrored into
    -- organizations.status)
    state TEXT NOT NULL,
    -- free, trial, paid, classic_paid, classic_trial, classic_free
    plan TEXT NOT NULL,
    trial_started_at BIGINT,
    trial_ends_at BIGINT,
    period_ends_at BIGINT,
    suspended_at BIGINT,
    -- When the state last changed to trial_expired or suspended: the start of the automatic
    -- deletion's clock as the policy defines it.
    deletion_due_at BIGINT,
    -- Why the organization was deleted: admin, cancelled, trial_expired, suspended, unused.
    deletion_reason TEXT,
    deleted_at BIGINT,
    purge_starts_at BIGINT,
    purge_due_by BIGINT,
    audit_purge_starts_at BIGINT,
    purge_started_at BIGINT,
    purged_at BIGINT,
    -- When the organization's own audit trail was cut to its signed anchor (AUD-3).
    audit_purged_at BIGINT,
    -- The notice sent before an automatic deletion, so it goes once: the state it was for.
    notice_sent_for TEXT,
    -- terms-v3: when the organization was asked whether it wants to continue, and when it
    -- last said yes (or was last used).
    continue_asked_at BIGINT,
    last_confirmed_at BIGINT,
    -- Bumped by every write, so a write based on a stale read changes nothing.
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX org_lifecycle_by_state ON org_lifecycle (state, org_id);

CREATE TABLE org_contract_events (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    event TEXT NOT NULL,
    at BIGINT NOT NULL,
    period_end BIGINT,
    recorded_at BIGINT NOT NULL,
    -- operator or account ID that recorded it
    recorded_by TEXT NOT NULL
);
CREATE INDEX org_contract_events_by_org ON org_contract_events (org_id, at, recorded_at);

-- Every existing organization starts active on the free plan.
INSERT INTO org_lifecycle (org_id, state, plan, last_confirmed_at, version, updated_at)
    SELECT id, 'active', 'free', created_at, 1, updated_at FROM organizations;
