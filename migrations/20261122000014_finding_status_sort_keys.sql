-- The first page of `slaBreached=true` in the default order (-severity, -firstSeen)
-- walked finding_view in that order and probed finding_status for each row until
-- it had a page of breaches. Breaches are rare among the most severe and newest
-- findings (those are the least likely to be past their deadline), so at a million
-- findings it probed 7,606 rows for 51: 43 ms.
--
-- finding_status now carries the other sort key of that order (a finding's first
-- sighting never changes, nor does its severity), and an index of the open
-- findings in that order with their deadline beside each entry: the page walks it,
-- reading only the index, and joins finding_view for the page's rows alone.
ALTER TABLE finding_status ADD COLUMN first_seen timestamptz;

UPDATE finding_status AS s
SET first_seen = v.first_seen
FROM finding_view AS v
WHERE v.id = s.id;

ALTER TABLE finding_status ALTER COLUMN first_seen SET NOT NULL;

CREATE INDEX finding_status_open_sort_idx
    ON finding_status (tenant_id, severity_rank, first_seen, id)
    INCLUDE (due_at)
    WHERE status IN ('OPEN', 'CONFIRMED');
