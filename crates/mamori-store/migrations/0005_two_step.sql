-- Two-step verification (ACC-6), log-in challenges, personal access tokens, and the
-- organization's policy that its members use two-step verification (ORG-6).

-- One row per account that started TOTP enrolment. The shared secret is sealed under the
-- account's data key; `enabled_at` is NULL until a code confirms the enrolment.
-- `last_used_step` is the last 30-second step whose code was accepted, so a code is never
-- accepted twice (RFC 6238 section 5.2).
CREATE TABLE two_step (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id),
    secret_sealed TEXT NOT NULL,
    enabled_at BIGINT,
    last_used_step BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Recovery codes as keyed hashes (HMAC under a key derived from the account's data key).
CREATE TABLE recovery_codes (
    account_id TEXT NOT NULL REFERENCES accounts (id),
    code_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (account_id, code_hash)
);

-- The pending second step of a log-in: only the SHA-256 of the challenge is stored.
CREATE TABLE login_challenges (
    challenge_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failures BIGINT NOT NULL
);
CREATE INDEX login_challenges_by_account ON login_challenges (account_id);

-- Personal access tokens: the name is sealed under the account's data key, the token is
-- stored only as its SHA-256.
CREATE TABLE personal_tokens (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    name_sealed TEXT NOT NULL,
    scope TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX personal_tokens_by_account ON personal_tokens (account_id, created_at);

ALTER TABLE organizations ADD COLUMN require_two_step BIGINT NOT NULL DEFAULT 0;
