-- Command-side index of scans, written with their events: lists scans by status
-- and target until the scan read model serves richer queries.
CREATE TABLE scan_index
(
    tenant_id  uuid        NOT NULL,
    scan_id    uuid PRIMARY KEY,
    target     text        NOT NULL,
    scanner    text        NOT NULL,
    status     text        NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX scan_index_list_idx ON scan_index (tenant_id, created_at DESC, scan_id DESC);
CREATE INDEX scan_index_target_idx ON scan_index (tenant_id, target, created_at DESC);
