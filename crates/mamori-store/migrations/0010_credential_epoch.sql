-- The credential cache's epoch: every transaction that revokes or changes a session, a token
-- or an account bumps it, so each process's in-memory credential cache can tell that someone
-- else changed something and forget what it holds (see mamori-store's `cache` module).
CREATE TABLE credential_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL
);

INSERT INTO credential_epoch (id, epoch) VALUES (1, 0);
