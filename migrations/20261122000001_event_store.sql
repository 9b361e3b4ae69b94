-- The event store: postgres-es's `events` table, extended so that it can also be
-- read in commit order (for the relay, rebuilds and the audit export) and scoped
-- by tenant.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    -- the aggregate's version after this event; the primary key is the optimistic lock
    sequence       bigint CHECK (sequence >= 1) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        jsonb                        NOT NULL,
    metadata       jsonb                        NOT NULL,
    -- global order of appends; handed out before commit, so it alone is not safe to tail
    position       bigint GENERATED ALWAYS AS IDENTITY,
    -- the appending transaction: a reader that stays below the oldest running
    -- transaction and orders by (txid, position) never skips a late committer
    txid           xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz                  NOT NULL DEFAULT now(),
    tenant_id      uuid GENERATED ALWAYS AS ((metadata ->> 'tenant_id')::uuid) STORED NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_position_key ON events (position);
CREATE INDEX events_commit_order_idx ON events (txid, position);
CREATE INDEX events_tenant_position_idx ON events (tenant_id, position);

-- One notification per appending statement, delivered at commit, wakes the readers;
-- they also poll, so a lost notification only costs latency.
CREATE FUNCTION notify_events_appended() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('vulnledger_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_appended
    AFTER INSERT
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION notify_events_appended();

-- The store is an audit log: rows are never changed or removed.
CREATE FUNCTION forbid_event_rewrite() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'events are immutable' USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER events_immutable
    BEFORE UPDATE OR DELETE
    ON events
    FOR EACH ROW
EXECUTE FUNCTION forbid_event_rewrite();
