-- When a risk acceptance ends by itself: the expiry timer's durable state. Kept in
-- the finding index (same transaction as the finding's events), so a restart loses
-- no timer and a revoked or renewed acceptance cancels its old deadline.
ALTER TABLE finding_index ADD COLUMN risk_expires_at timestamptz;
CREATE INDEX finding_index_expiring_idx ON finding_index (risk_expires_at)
    WHERE status = 'RISK_ACCEPTED';

-- Command-side index of approvals, written with their events: enforces one
-- pending approval per finding and lists approvals.
CREATE TABLE approval_index
(
    tenant_id     uuid        NOT NULL,
    approval_id   uuid PRIMARY KEY,
    finding_id    uuid        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'REJECTED', 'WITHDRAWN')),
    requested_by  uuid        NOT NULL,
    requested_at  timestamptz NOT NULL
);
CREATE UNIQUE INDEX approval_index_one_pending_per_finding
    ON approval_index (tenant_id, finding_id) WHERE status = 'PENDING';
CREATE INDEX approval_index_list_idx ON approval_index (tenant_id, requested_at, approval_id);

-- Where each event-driven process (process managers now, projections later)
-- stands in the ordered event stream.
CREATE TABLE process_checkpoints
(
    name       text PRIMARY KEY,
    txid       bigint      NOT NULL,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
