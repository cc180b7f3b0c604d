-- Organization-local accounts (ACC-7, the "classic plan" mode): an account that an
-- organization's administrator (or a member with invite permission) registers, that belongs to
-- that organization only and logs in with the organization's ID and a login ID instead of an
-- email address. The account itself is an ordinary `accounts` row without an `email_index`
-- (so it never answers an email log-in or a reset by email); this row ties it to its
-- organization.
--
-- `login_index` is the keyed blind index of the organization and the login ID, so the store
-- never sees the login ID in plaintext; `login_id_sealed` is the login ID sealed under the
-- account's data key, for the organization's list. While `must_change_password` is 1 the
-- password is an initial one, mailed to the holder, valid until `initial_password_expires_at`,
-- and a log-in with it earns only a password-change challenge.
CREATE TABLE local_accounts (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id),
    org_id TEXT NOT NULL REFERENCES organizations (id),
    login_index TEXT NOT NULL UNIQUE,
    login_id_sealed TEXT NOT NULL,
    must_change_password BIGINT NOT NULL,
    initial_password_expires_at BIGINT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX local_accounts_by_org ON local_accounts (org_id, account_id);
