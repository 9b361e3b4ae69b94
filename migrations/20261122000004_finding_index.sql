-- Command-side index of findings: which finding a fingerprint names and what state
-- it is in, written in the same transaction as the finding's events. Imports decide
-- new / redetected / reopened / resolved from it exactly (never from an eventually
-- consistent read model), and its primary key makes two concurrent imports of the
-- same finding collide instead of creating it twice.
CREATE TABLE finding_index
(
    tenant_id    uuid        NOT NULL,
    fingerprint  text        NOT NULL,
    finding_id   uuid        NOT NULL UNIQUE,
    asset        text        NOT NULL,
    scanner      text        NOT NULL,
    status       text        NOT NULL
        CHECK (status IN ('OPEN', 'CONFIRMED', 'FALSE_POSITIVE', 'RISK_ACCEPTED', 'RESOLVED')),
    last_seen    timestamptz NOT NULL,
    last_scan_id uuid        NOT NULL,
    PRIMARY KEY (tenant_id, fingerprint)
);

-- "Open findings of this target and scanner", which a new report may resolve.
CREATE INDEX finding_index_resolvable_idx ON finding_index (tenant_id, asset, scanner)
    WHERE status IN ('OPEN', 'CONFIRMED', 'RISK_ACCEPTED');
