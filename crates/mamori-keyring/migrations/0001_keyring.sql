-- The keyring lives in a database of its own (a separate SQLite file, or a separate
-- PostgreSQL database), so that a copy of the data store never carries the keys with it.
-- Each row is one data key, wrapped (XChaCha20-Poly1305) by the master key-encryption key.
CREATE TABLE data_keys (
    owner TEXT PRIMARY KEY,
    wrapped TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Destroyed keys leave only their owner and time: proof that the key was destroyed.
CREATE TABLE destroyed_keys (
    owner TEXT PRIMARY KEY,
    destroyed_at BIGINT NOT NULL
);
