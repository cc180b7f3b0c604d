-- Portable SQL for SQLite and PostgreSQL through sqlx's Any driver: TEXT ids, BIGINT
-- epoch-millisecond times, BIGINT 0/1 flags, binary values as hex or base64 TEXT.

-- Personal fields are sealed under the account's data key (see docs/design/keyring.md);
-- email_index is a keyed HMAC of the canonical email, so look-up works without plaintext.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    email_index TEXT UNIQUE,
    email_sealed TEXT,
    display_name_sealed TEXT,
    password_hash TEXT,
    email_verified BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);

-- Only the SHA-256 of a session token is stored.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    ip TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_by_account ON sessions (account_id, created_at);

CREATE TABLE operator_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- One hash chain per organization plus the platform chain. The head row is updated in the
-- same transaction as each append, which serializes appends to one chain on both engines.
CREATE TABLE audit_chain_heads (
    chain TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    org_id TEXT,
    actor_type TEXT NOT NULL,
    actor_id TEXT,
    action TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    outcome TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    request_id TEXT,
    occurred_at BIGINT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (chain, seq)
);
CREATE INDEX audit_events_by_time ON audit_events (occurred_at);

-- Data keys to destroy in the keyring. Written in the same transaction as the deletion that
-- requires it, so a crash between the data store and the keyring never leaves a key alive.
CREATE TABLE key_destructions (
    owner TEXT PRIMARY KEY,
    requested_at BIGINT NOT NULL
);
