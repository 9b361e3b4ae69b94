-- The ordered reader's horizon: readers take events whose transaction id is below
-- it, because every transaction below it has finished and every later writer gets a
-- larger id (src/store/reader.rs). It was the oldest transaction running anywhere in
-- the cluster (`pg_snapshot_xmin(pg_current_snapshot())`), so a long transaction in
-- another database of the same server (another application, a batch job, another
-- vulnledger's import) held every reader of this store back.
--
-- Now a running transaction is passed over when it is known to belong to a backend
-- connected to another database: such a transaction can never write this database's
-- `events`. Everything else still counts, the transactions whose backend could not
-- be told (finished since the snapshot, or not shown to this role) included, so the
-- horizon is never above the old one's guarantee: every transaction of this database
-- below it has finished. The caller's snapshot is the statement's, so rows read in
-- the same statement are exactly those committed below it.
CREATE FUNCTION events_horizon() RETURNS xid8
LANGUAGE sql STABLE AS
$$
    SELECT least(
        pg_snapshot_xmax(snapshot),
        (SELECT min(running)
           FROM pg_snapshot_xip(snapshot) AS running
          WHERE running::text::bigint % 4294967296 NOT IN (
                SELECT other.backend_xid::text::bigint
                  FROM pg_stat_get_activity(NULL) AS other
                 WHERE other.backend_xid IS NOT NULL
                   AND other.datid <> (SELECT own.datid
                                         FROM pg_stat_get_activity(pg_backend_pid()) AS own)))
    )
    FROM pg_current_snapshot() AS snapshot
$$;
