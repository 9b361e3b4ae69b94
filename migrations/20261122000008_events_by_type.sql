-- Readers that follow one aggregate type (the live feed of scan progress) range-scan
-- this instead of stepping over every other event in commit order.
CREATE INDEX events_type_commit_order_idx ON events (aggregate_type, txid, position);
