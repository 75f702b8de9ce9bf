-- The tamper-evident log (DESIGN.md, "Audit log"): every event carries its chain hash and a salted
-- commitment to its payload; payloads live apart so retention and erasure can delete them while
-- the skeleton still verifies. Rows of the old table are chained in order by the migration.
DROP TRIGGER audit_events_no_update;
DROP TRIGGER audit_events_no_delete;
DROP INDEX audit_by_ts;
DROP INDEX audit_by_request;
DROP INDEX audit_by_grant;
DROP INDEX audit_by_actor;
DROP INDEX audit_by_subject;
ALTER TABLE audit_events RENAME TO audit_events_v1;

-- `seq` is assigned by the writer, which holds the chain head; never reused.
CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY,
    ts_us      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    resource   TEXT,
    subject    TEXT,
    request_id TEXT,
    grant_id   TEXT,
    session_id TEXT,
    commitment BLOB NOT NULL,
    hash       BLOB NOT NULL
);
CREATE INDEX audit_by_ts ON audit_events (ts_us);
CREATE INDEX audit_by_request ON audit_events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audit_by_grant ON audit_events (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX audit_by_session ON audit_events (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX audit_by_actor ON audit_events (actor);
CREATE INDEX audit_by_subject ON audit_events (subject) WHERE subject IS NOT NULL;

CREATE TABLE audit_payloads (
    seq  INTEGER PRIMARY KEY,
    salt BLOB NOT NULL,
    body TEXT NOT NULL
);

-- Signed range boundaries: events first_seq..=last_seq left the live log (deleted, or archived
-- to `segment`).
CREATE TABLE audit_gaps (
    first_seq INTEGER PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    prev_hash BLOB NOT NULL,
    last_hash BLOB NOT NULL,
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL,
    segment   TEXT
);

CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY,
    hash      BLOB NOT NULL,
    ts_us     INTEGER NOT NULL,
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL
);

CREATE TABLE audit_segments (
    name      TEXT PRIMARY KEY,
    manifest  TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL
);

CREATE TABLE holds (
    id     TEXT PRIMARY KEY,
    active INTEGER NOT NULL,
    body   TEXT NOT NULL
);

-- Holds a row only inside a retention or erasure transaction: the triggers below let events and
-- payloads be deleted then, and never otherwise.
CREATE TABLE maintenance_permit (reason TEXT NOT NULL);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM maintenance_permit)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_payloads_no_update BEFORE UPDATE ON audit_payloads
BEGIN SELECT RAISE(ABORT, 'audit payloads are append-only'); END;
CREATE TRIGGER audit_payloads_no_delete BEFORE DELETE ON audit_payloads
WHEN NOT EXISTS (SELECT 1 FROM maintenance_permit)
BEGIN SELECT RAISE(ABORT, 'audit payloads are deleted only by retention or erasure'); END;
CREATE TRIGGER audit_gaps_no_update BEFORE UPDATE ON audit_gaps
BEGIN SELECT RAISE(ABORT, 'range boundaries are append-only'); END;
CREATE TRIGGER audit_gaps_no_delete BEFORE DELETE ON audit_gaps
BEGIN SELECT RAISE(ABORT, 'range boundaries are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
