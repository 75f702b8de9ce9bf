-- The number of the last intake journal record taken into the log (see sqlite/intake.rs). It
-- changes in the same transaction as the record's events are appended, so after a crash the
-- journal's records after it, and only those, are taken in.
CREATE TABLE audit_intake (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    taken INTEGER NOT NULL
);
INSERT INTO audit_intake (id, taken) VALUES (0, 0);
