-- Organizations (ORG-1 to ORG-5). Customer content (names) is sealed under the
-- organization's data key; emails of invitations are sealed too, with a blind index.

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name_sealed TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    org_id TEXT NOT NULL REFERENCES organizations (id),
    account_id TEXT NOT NULL REFERENCES accounts (id),
    role TEXT NOT NULL,
    can_invite BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, account_id)
);
CREATE INDEX memberships_by_account ON memberships (account_id);
CREATE INDEX memberships_by_role ON memberships (org_id, role);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    email_index TEXT NOT NULL,
    email_sealed TEXT NOT NULL,
    role TEXT NOT NULL,
    can_invite BIGINT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    invited_by TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    accepted_by TEXT
);
-- At most one pending invitation per organization and address.
CREATE UNIQUE INDEX invitations_one_pending ON invitations (org_id, email_index)
    WHERE status = 'pending';
CREATE INDEX invitations_by_org ON invitations (org_id, created_at);

CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    name_sealed TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX teams_by_org ON teams (org_id, id);

CREATE TABLE team_members (
    team_id TEXT NOT NULL REFERENCES teams (id),
    org_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, account_id)
);
CREATE INDEX team_members_by_account ON team_members (org_id, account_id);

CREATE TABLE org_apps (
    org_id TEXT NOT NULL REFERENCES organizations (id),
    app_id TEXT NOT NULL REFERENCES apps (id),
    mode TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, app_id)
);

CREATE TABLE org_app_members (
    org_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, app_id, account_id)
);
CREATE INDEX org_app_members_by_account ON org_app_members (org_id, account_id);

-- Outgoing mail, written in the same transaction as the change that causes it. The message
-- (recipient, subject, body) is sealed under the data key of `key_owner`, so no address or
-- one-time token is readable in the data store, and a destroyed key makes it unsendable.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    key_owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    message_sealed TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    sent_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
