-- Status changes as HOT updates of finding_index, the command-side index that every
-- finding command updates in its own statement.
--
-- Its two partial indexes named `status` in their predicates, so every status
-- change, even OPEN to CONFIRMED, wrote a new entry in all four of its indexes
-- (PostgreSQL cannot make an update HOT when a column an index reads changes, and
-- a predicate reads it). Now no index reads `status`:
-- - "open findings of this target and scanner, which a report may resolve" reads
--   the target's and scanner's rows and checks their status (an import reads those
--   rows anyway, by fingerprint, for the findings its report names);
-- - the risk-expiry sweep's index holds the rows with a deadline, which only a
--   RISK_ACCEPTED finding has (`indexes::FindingIndex`; the import's auto-resolve
--   clears it too).
UPDATE finding_index
SET risk_expires_at = NULL
WHERE status <> 'RISK_ACCEPTED'
  AND risk_expires_at IS NOT NULL;

DROP INDEX finding_index_resolvable_idx;
CREATE INDEX finding_index_resolvable_idx ON finding_index (tenant_id, asset, scanner);

DROP INDEX finding_index_expiring_idx;
CREATE INDEX finding_index_expiring_idx ON finding_index (risk_expires_at)
    WHERE risk_expires_at IS NOT NULL;

ALTER TABLE finding_index SET (fillfactor = 90);
