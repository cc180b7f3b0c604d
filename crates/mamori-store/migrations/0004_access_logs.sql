-- Access logs (LOG-1, LOG-2, LOG-3): one row per HTTP request, with its time (UTC epoch
-- milliseconds), method, path, redacted query, status, latency, client IP, user agent, the
-- principal and organization where known, and the request ID.
--
-- Kept apart from the audit trail on purpose: no foreign keys into other tables and never
-- joined with them, so deleting old rows (at most 545 days) touches nothing else, and rows
-- may name organizations or principals that no longer exist (or never did).
-- The id starts with the zero-padded time, so it sorts by time as well.

CREATE TABLE access_logs (
    id TEXT PRIMARY KEY,
    logged_at BIGINT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT,
    status BIGINT NOT NULL,
    latency_us BIGINT NOT NULL,
    client_ip TEXT,
    user_agent TEXT,
    principal_type TEXT,
    principal_id TEXT,
    org_id TEXT,
    request_id TEXT
);
-- Newest-first pages and the retention delete both walk this index.
CREATE INDEX access_logs_by_time ON access_logs (logged_at, id);
-- Investigations ask "what did this principal do" and "what happened in this organization".
CREATE INDEX access_logs_by_principal ON access_logs (principal_id, logged_at, id);
CREATE INDEX access_logs_by_org ON access_logs (org_id, logged_at, id);
