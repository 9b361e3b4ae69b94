-- Read models: written only by projection workers (projections/), from the ordered
-- event stream, never by command handlers. Each batch of events and the projection's
-- checkpoint are written in one transaction, so a redelivered batch is skipped and a
-- crash mid-batch leaves no half-applied counts.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Where each projection stands. `txid, position` is the last event applied in
-- commit order (see store/reader.rs); `max_position` the highest position applied,
-- which is what read responses report in X-Projection-Position.
CREATE TABLE projection_checkpoints
(
    name         text PRIMARY KEY,
    version      integer     NOT NULL,
    txid         bigint      NOT NULL,
    position     bigint      NOT NULL,
    max_position bigint      NOT NULL,
    events       bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per finding, shaped for the finding list and its filters.
CREATE TABLE finding_view
(
    id                uuid PRIMARY KEY,
    tenant_id         uuid             NOT NULL,
    title             text             NOT NULL,
    severity          text             NOT NULL,
    -- 4 = CRITICAL .. 0 = INFO (Severity::rank), so "-severity" is an index scan.
    severity_rank     smallint         NOT NULL,
    cvss              double precision,
    cve               text,
    rule_id           text,
    asset             text             NOT NULL,
    scanner           text             NOT NULL,
    package           text,
    installed_version text,
    fixed_version     text,
    location          text,
    status            text             NOT NULL,
    first_seen        timestamptz      NOT NULL,
    last_seen         timestamptz      NOT NULL,
    resolved_at       timestamptz,
    due_at            timestamptz      NOT NULL,
    risk_acceptance   jsonb,
    tags              text[]           NOT NULL,
    -- The finding's event sequence: its ETag, and a second guard against applying
    -- one of its events twice.
    version           bigint           NOT NULL,
    -- Lower-cased title, CVE, asset and package: what `q` searches.
    search            text             NOT NULL
);

-- Keyset pagination: one index per sort key, with id as the tie-breaker. PostgreSQL
-- scans them backwards for the descending sorts.
CREATE INDEX finding_view_severity_idx ON finding_view (tenant_id, severity_rank, first_seen, id);
CREATE INDEX finding_view_first_seen_idx ON finding_view (tenant_id, first_seen, id);
CREATE INDEX finding_view_last_seen_idx ON finding_view (tenant_id, last_seen, id);
CREATE INDEX finding_view_due_idx ON finding_view (tenant_id, due_at, id);
-- Open findings by severity and deadline: status filters and SLA breach.
CREATE INDEX finding_view_open_idx ON finding_view (tenant_id, severity_rank, due_at)
    WHERE status IN ('OPEN', 'CONFIRMED');
CREATE INDEX finding_view_status_idx ON finding_view (tenant_id, status, severity_rank, first_seen, id);
CREATE INDEX finding_view_asset_idx ON finding_view (tenant_id, asset, severity_rank, first_seen, id);
CREATE INDEX finding_view_cve_idx ON finding_view (tenant_id, cve) WHERE cve IS NOT NULL;
CREATE INDEX finding_view_tags_idx ON finding_view USING gin (tags);
CREATE INDEX finding_view_search_idx ON finding_view USING gin (search gin_trgm_ops);

-- Which scans saw which finding (`scanId` filter).
CREATE TABLE finding_scans
(
    tenant_id  uuid NOT NULL,
    scan_id    uuid NOT NULL,
    finding_id uuid NOT NULL,
    PRIMARY KEY (scan_id, finding_id)
);

-- Exact counts by every dimension the list and dashboards filter on without a
-- free-text or time predicate, so `meta.total` and KPIs never count rows.
-- `resolved_seconds` sums (resolved_at - first_seen) over the RESOLVED rows: MTTR.
CREATE TABLE finding_counts
(
    tenant_id        uuid   NOT NULL,
    asset            text   NOT NULL,
    scanner          text   NOT NULL,
    severity         text   NOT NULL,
    status           text   NOT NULL,
    count            bigint NOT NULL,
    resolved_seconds bigint NOT NULL,
    PRIMARY KEY (tenant_id, asset, scanner, severity, status)
);

-- The same without the asset: a tenant's totals in a few dozen rows.
CREATE TABLE tenant_counts
(
    tenant_id        uuid   NOT NULL,
    scanner          text   NOT NULL,
    severity         text   NOT NULL,
    status           text   NOT NULL,
    count            bigint NOT NULL,
    resolved_seconds bigint NOT NULL,
    PRIMARY KEY (tenant_id, scanner, severity, status)
);

-- One row per asset with a finding.
CREATE TABLE asset_view
(
    tenant_id     uuid        NOT NULL,
    asset         text        NOT NULL,
    total         bigint      NOT NULL,
    open_total    bigint      NOT NULL,
    open_critical bigint      NOT NULL,
    open_high     bigint      NOT NULL,
    open_medium   bigint      NOT NULL,
    open_low      bigint      NOT NULL,
    open_info     bigint      NOT NULL,
    -- Rank of the highest severity among open findings, -1 when none is open.
    worst_rank    smallint    NOT NULL,
    last_seen     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, asset)
);
CREATE INDEX asset_view_rank_idx ON asset_view (tenant_id, worst_rank, open_total, asset);
CREATE INDEX asset_view_search_idx ON asset_view USING gin (lower(asset) gin_trgm_ops);

-- Per UTC day and severity, by the time the change happened (not when it was
-- recorded): trends, and the "last 7 days" KPIs. `opened - closed` summed up to a
-- day is the open count at its end.
CREATE TABLE daily_counts
(
    tenant_id  uuid   NOT NULL,
    day        date   NOT NULL,
    severity   text   NOT NULL,
    new        bigint NOT NULL,
    remediated bigint NOT NULL,
    opened     bigint NOT NULL,
    closed     bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, severity)
);

-- Open findings by the UTC day their SLA deadline falls on: breach against "now"
-- is whole past days from here plus today's part from finding_view.
CREATE TABLE open_due_counts
(
    tenant_id uuid   NOT NULL,
    severity  text   NOT NULL,
    due_day   date   NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, severity, due_day)
);

-- The SLA policy in force per tenant, as the projection last saw it.
CREATE TABLE sla_policy_view
(
    tenant_id uuid PRIMARY KEY,
    policy    jsonb NOT NULL
);
