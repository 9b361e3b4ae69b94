-- Status changes as HOT updates of finding_view.
--
-- A status change rewrote its finding_view row with a new entry in each of the nine
-- indexes, because `status` was indexed (finding_view_status_idx, and the predicate
-- of finding_view_open_idx): PostgreSQL makes an update HOT (heap only, no index
-- entry) only when no indexed column changes and the page has room. At a million
-- findings and 1,000 status changes a second, those index entries were most of a
-- live projection batch, and of the WAL.
--
-- The status, and what the status indexes ordered by, now also live in a narrow
-- table whose indexes are the only ones a status change touches; finding_view
-- keeps `status` as a plain column (the list shows it), indexed nowhere. Free space
-- on every page (fillfactor) lets the new version of a row stay on its page.
CREATE TABLE finding_status
(
    id            uuid PRIMARY KEY,
    tenant_id     uuid        NOT NULL,
    status        text        NOT NULL,
    severity_rank smallint    NOT NULL,
    due_at        timestamptz NOT NULL
);

INSERT INTO finding_status (id, tenant_id, status, severity_rank, due_at)
SELECT id, tenant_id, status, severity_rank, due_at
FROM finding_view;

-- `status=` filters: the finding ids of a status, which the list joins when the
-- status is rare (and otherwise reads finding_view in order, checking each row).
CREATE INDEX finding_status_status_idx ON finding_status (tenant_id, status, id);
-- Open findings by deadline: `slaBreached` (the ids past it) and the SLA dashboard
-- (today's part of the breaches, by severity), each one range of this index.
CREATE INDEX finding_status_open_idx ON finding_status (tenant_id, due_at)
    INCLUDE (severity_rank, id)
    WHERE status IN ('OPEN', 'CONFIRMED');

DROP INDEX finding_view_status_idx;
DROP INDEX finding_view_open_idx;

-- Pages written from now on keep a tenth free; pages written before get room as
-- PostgreSQL prunes the versions that the next updates leave behind. A projection
-- rebuild writes every page anew with it.
ALTER TABLE finding_view SET (fillfactor = 90);
