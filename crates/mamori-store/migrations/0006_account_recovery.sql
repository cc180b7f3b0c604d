-- Account recovery and credential protection (issue 4: items 3, 4, 5).

-- Brute-force protection, shared by every node: one row per login name (the keyed blind
-- index of the email, whether or not an account has it, so an unknown address behaves exactly
-- like a known one). `attempts` counts attempts since the last success; a success deletes the
-- row. Rows untouched for a while are deleted by the jobs.
CREATE TABLE login_throttles (
    email_index TEXT PRIMARY KEY,
    attempts BIGINT NOT NULL,
    last_attempt_at BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
CREATE INDEX login_throttles_by_time ON login_throttles (last_attempt_at);

-- One-time tokens mailed to an account: password resets, email verification and email
-- changes. Only the SHA-256 of a token is stored. `email_index` is the address the token was
-- sent to; for an email change `email_sealed` is that new address, sealed under the account's
-- data key.
CREATE TABLE account_tokens (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    token_hash TEXT NOT NULL UNIQUE,
    email_index TEXT NOT NULL,
    email_sealed TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX account_tokens_by_account ON account_tokens (account_id, purpose, created_at);

-- An organization may admit only accounts whose email address is verified.
ALTER TABLE organizations ADD COLUMN require_verified_email BIGINT NOT NULL DEFAULT 0;

-- ACC-7: the plan's limit on members of any kind, set by the operator; NULL is no limit.
ALTER TABLE organizations ADD COLUMN max_members BIGINT;
