-- The audit trail (AUD-1, AUD-2): who acted, by name at the time (sealed under the chain's
-- key), signed checkpoints, the anchor a purged chain keeps, and who may read an
-- organization's trail.

ALTER TABLE audit_events ADD COLUMN actor_name_sealed TEXT;

-- Events up to anchor_seq were deleted by retention; anchor_hash is the hash of the last one,
-- so the rest of the chain still verifies.
ALTER TABLE audit_chain_heads ADD COLUMN anchor_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_chain_heads ADD COLUMN anchor_hash TEXT NOT NULL
    DEFAULT '0000000000000000000000000000000000000000000000000000000000000000';
-- When the head last got a checkpoint, and at which seq.
ALTER TABLE audit_chain_heads ADD COLUMN checkpoint_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_chain_heads ADD COLUMN checkpoint_at BIGINT NOT NULL DEFAULT 0;

-- Retention finds the chains with expired events through the time index; reading filters a
-- chain by time.
CREATE INDEX audit_events_by_chain_time ON audit_events (chain, occurred_at);

-- An Ed25519 signature over JCS({chain, hash, seq, time}).
CREATE TABLE audit_checkpoints (
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    signed_at BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);

-- The audit-log viewer right an administrator grants to a member or a team.
CREATE TABLE audit_viewers (
    org_id TEXT NOT NULL REFERENCES organizations (id),
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, subject_type, subject_id)
);
