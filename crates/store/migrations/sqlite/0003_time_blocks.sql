-- Time search without a per-event index (one B-tree fewer to write on every append and to
-- delete from on every sweep): each block says which timestamps the events first_seq..=last_seq
-- carry. Events arrive nearly in time order, so a time window maps to a short seq range, which
-- the search then filters exactly.
DROP INDEX audit_by_ts;
CREATE TABLE audit_time_blocks (
    first_seq INTEGER PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    min_ts_us INTEGER NOT NULL,
    max_ts_us INTEGER NOT NULL
);
INSERT INTO audit_time_blocks (first_seq, last_seq, min_ts_us, max_ts_us)
SELECT min(seq), max(seq), min(ts_us), max(ts_us) FROM audit_events GROUP BY seq / 4096;
