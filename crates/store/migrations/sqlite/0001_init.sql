-- Requests and the grants they become: one row per request, the aggregate kept as JSON in `body`,
-- with the columns that queries filter on alongside it.
CREATE TABLE requests (
    id               TEXT PRIMARY KEY,
    grant_id         TEXT NOT NULL UNIQUE,
    principal        TEXT NOT NULL,
    resource         TEXT NOT NULL,
    state            TEXT NOT NULL,
    has_grant        INTEGER NOT NULL,
    created_us       INTEGER NOT NULL,
    -- when the scheduler must next look at this request; NULL once nothing is due ever again
    next_deadline_us INTEGER,
    body             TEXT NOT NULL
);
CREATE INDEX requests_due ON requests (next_deadline_us) WHERE next_deadline_us IS NOT NULL;
CREATE INDEX requests_by_principal ON requests (principal, created_us);
CREATE INDEX requests_by_state ON requests (state, created_us);
CREATE INDEX requests_by_created ON requests (created_us);

-- The policies a request may be approved under, so approvers can find what awaits them.
CREATE TABLE request_policies (
    policy     TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    PRIMARY KEY (policy, request_id)
) WITHOUT ROWID;

-- Append-only: the triggers below refuse UPDATE and DELETE.
CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_us      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    resource   TEXT,
    subject    TEXT,
    request_id TEXT,
    grant_id   TEXT,
    session_id TEXT,
    details    TEXT NOT NULL
);
CREATE INDEX audit_by_ts ON audit_events (ts_us);
CREATE INDEX audit_by_request ON audit_events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audit_by_grant ON audit_events (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX audit_by_actor ON audit_events (actor);
CREATE INDEX audit_by_subject ON audit_events (subject);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
