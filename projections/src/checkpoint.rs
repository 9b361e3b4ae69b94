//! A projection's durable position, written in the same transaction as its rows.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The NOTIFY channel a projection signals after each committed batch; API processes
/// listen to it to answer `X-Min-Position` without polling, and to know which
/// tenants' cached answers the batch made old ([`Notice`]).
pub const CHANNEL: &str = "vulnledger_projections";

/// A batch naming more tenants than this says "every tenant": a NOTIFY payload must
/// stay under 8,000 bytes, and a batch that wide invalidates most caches anyway.
pub const MAX_NAMED_TENANTS: usize = 64;

/// What a projection announces on [`CHANNEL`] when a batch commits:
/// `<name> <txid> <position> <max_position> <tenants>`, where `<tenants>` is a
/// comma-separated list of the tenants whose events the batch applied, or `*` for
/// "any tenant may have changed" (a rebuild swapped in, a reset, a wide batch). A
/// payload without the fifth field (an earlier release) means `*` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub name: String,
    pub at: ProjectionCheckpoint,
    /// `None`: every tenant.
    pub tenants: Option<Vec<Uuid>>,
}

impl Notice {
    pub fn payload(name: &str, at: &ProjectionCheckpoint, tenants: Option<&[Uuid]>) -> String {
        let tenants = match tenants {
            Some(t) if t.len() <= MAX_NAMED_TENANTS => t
                .iter()
                .map(|t| t.simple().to_string())
                .collect::<Vec<_>>()
                .join(","),
            _ => "*".to_owned(),
        };
        format!(
            "{name} {} {} {} {tenants}",
            at.txid, at.position, at.max_position
        )
    }

    /// `None` if the payload is not a checkpoint notice at all.
    pub fn parse(payload: &str) -> Option<Self> {
        let mut parts = payload.split(' ');
        let name = parts.next()?.to_owned();
        let txid = parts.next()?.parse().ok()?;
        let position = parts.next()?.parse().ok()?;
        let max_position = parts.next()?.parse().ok()?;
        // Anything unreadable in the list widens it to every tenant: a cache
        // invalidated too often is slower, one invalidated too rarely is wrong.
        let tenants = match parts.next() {
            None | Some("*") => None,
            Some(list) => list
                .split(',')
                .map(|t| t.parse::<Uuid>().ok())
                .collect::<Option<Vec<_>>>(),
        };
        Some(Self {
            name,
            at: ProjectionCheckpoint {
                txid,
                position,
                max_position,
                ..Default::default()
            },
            tenants,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectionCheckpoint {
    /// Last event applied, in commit order `(txid, position)`.
    pub txid: i64,
    pub position: i64,
    /// The highest position applied so far (positions are not commit order).
    pub max_position: i64,
    /// How many events this projection has applied since it was (re)built.
    pub events: i64,
    /// The projection's version when its rows were written.
    pub version: i32,
}

impl ProjectionCheckpoint {
    /// Whether the event at `(txid, position)` has been applied.
    pub fn covers(&self, txid: i64, position: i64) -> bool {
        (self.txid, self.position) >= (txid, position)
    }
}

/// The checkpoint of `name`, or `None` before its first batch.
pub async fn load(pool: &PgPool, name: &str) -> Result<Option<ProjectionCheckpoint>, sqlx::Error> {
    let row: Option<(i64, i64, i64, i64, i32)> = sqlx::query_as(
        "SELECT txid, position, max_position, events, version \
         FROM projection_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(txid, position, max_position, events, version)| ProjectionCheckpoint {
            txid,
            position,
            max_position,
            events,
            version,
        },
    ))
}

/// The checkpoint of `name`, locked until the transaction ends: writers of the
/// projection's tables serialize on it.
pub async fn lock(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<ProjectionCheckpoint>, sqlx::Error> {
    let row: Option<(i64, i64, i64, i64, i32)> = sqlx::query_as(
        "SELECT txid, position, max_position, events, version \
         FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(
        |(txid, position, max_position, events, version)| ProjectionCheckpoint {
            txid,
            position,
            max_position,
            events,
            version,
        },
    ))
}

/// The statement that locks `name`'s checkpoint until the transaction ends (as
/// [`lock`] does, without reading it), for sending with `BEGIN` in one round trip.
pub fn lock_statement(name: &str) -> String {
    format!(
        "SELECT 1 FROM projection_checkpoints WHERE name = '{}' FOR UPDATE",
        name.replace('\'', "''")
    )
}

/// Moves `name` from `from` to `at` after a batch that applied events of `tenants`,
/// and tells listeners, as [`save`] does, but only if it still stands at `from`;
/// `false` (nothing written, nobody told) if another writer moved it meanwhile, e.g.
/// a rebuild that swapped in its tables.
pub async fn advance(
    conn: &mut PgConnection,
    name: &str,
    from: &ProjectionCheckpoint,
    at: &ProjectionCheckpoint,
    tenants: &[Uuid],
) -> Result<bool, sqlx::Error> {
    write(conn, name, Some(from), at, Some(tenants)).await
}

/// Moves `name` to `at` and tells listeners, inside the batch's transaction (NOTIFY
/// is delivered on commit, so nobody hears of a batch that rolled back). Listeners
/// are told that any tenant may have changed.
pub async fn save(
    conn: &mut PgConnection,
    name: &str,
    at: &ProjectionCheckpoint,
) -> Result<(), sqlx::Error> {
    write(conn, name, None, at, None).await.map(drop)
}

/// [`advance`] from `from`, or from wherever it stands when `None`; whether it moved.
async fn write(
    conn: &mut PgConnection,
    name: &str,
    from: Option<&ProjectionCheckpoint>,
    at: &ProjectionCheckpoint,
    tenants: Option<&[Uuid]>,
) -> Result<bool, sqlx::Error> {
    // One round trip: the notification rides on the statement that saves, and is
    // sent only if it did.
    let saved: i64 = sqlx::query_scalar(
        "WITH saved AS ( \
           INSERT INTO projection_checkpoints (name, version, txid, position, max_position, events) \
           VALUES ($1, $2, $3, $4, $5, $6) \
           ON CONFLICT (name) DO UPDATE SET version = $2, txid = $3, position = $4, \
               max_position = $5, events = $6, updated_at = now() \
           WHERE $9::bigint IS NULL \
              OR (projection_checkpoints.txid = $9 AND projection_checkpoints.position = $10) \
           RETURNING 1) \
         SELECT count(*) FROM saved, LATERAL (SELECT pg_notify($7, $8)) AS told",
    )
    .bind(name)
    .bind(at.version)
    .bind(at.txid)
    .bind(at.position)
    .bind(at.max_position)
    .bind(at.events)
    .bind(CHANNEL)
    .bind(Notice::payload(name, at, tenants))
    .bind(from.map(|f| f.txid))
    .bind(from.map(|f| f.position))
    .fetch_one(&mut *conn)
    .await?;
    Ok(saved == 1)
}

/// A batch's move of its projection's checkpoint, from where the batch started to
/// where it ends, as CTEs that follow the batch's own writes in the same statement:
/// a batch that is one statement then needs no transaction (no BEGIN, no COMMIT,
/// and no round trip for the checkpoint).
pub struct Advance<'a> {
    pub name: &'a str,
    pub from: &'a ProjectionCheckpoint,
    pub to: &'a ProjectionCheckpoint,
    /// The tenants whose events the batch applies, for the notice.
    pub tenants: &'a [Uuid],
}

/// SQLSTATE of `projection_checkpoint_moved()`: the checkpoint did not stand where
/// the batch started, and the statement wrote nothing.
pub const MOVED: &str = "VL409";

/// SQLSTATE `lock_not_available`: someone else holds the checkpoint (a rebuild
/// swapping its tables in), and the statement wrote nothing rather than wait.
pub const BUSY: &str = "55P03";

/// Binds of [`Advance::sql`].
pub const ADVANCE_BINDS: usize = 10;

impl Advance<'_> {
    /// `lk AS …, cp AS … SELECT …` over binds `$first..$first+9`: the last CTEs and
    /// the final `SELECT` of a statement of data-modifying CTEs.
    ///
    /// - `lk` locks the checkpoint without waiting. The statement holds its tables
    ///   already, and a rebuild's swap takes the checkpoint first and the tables
    ///   next, so waiting could deadlock; the statement fails with [`BUSY`] instead.
    /// - `cp` moves the checkpoint if it stands at `from`. If it does not, the
    ///   statement fails with [`MOVED`], and the failure undoes its other writes.
    /// - The notice goes out (on commit) only with a move, and the commit does not
    ///   wait for the WAL flush: a batch lost in a crash is lost with its
    ///   checkpoint, and applied again from the durable events.
    pub fn sql(first: usize) -> String {
        let p: Vec<String> = (first..first + ADVANCE_BINDS)
            .map(|i| format!("${i}"))
            .collect();
        let [name, version, txid, position, max_position, events, from_txid, from_position, channel, payload] =
            <[String; ADVANCE_BINDS]>::try_from(p).expect("ten binds");
        format!(
            "lk AS (SELECT 1 FROM projection_checkpoints WHERE name = {name} FOR UPDATE NOWAIT), \
             cp AS (UPDATE projection_checkpoints AS c SET version = {version}, txid = {txid}, \
                 position = {position}, max_position = {max_position}, events = {events}, \
                 updated_at = now() \
               FROM lk WHERE c.name = {name} AND c.txid = {from_txid} \
                 AND c.position = {from_position} \
               RETURNING 1) \
             SELECT CASE WHEN moved.n = 1 THEN 1 ELSE projection_checkpoint_moved({name}) END \
             FROM (SELECT count(*) AS n FROM cp, \
                     LATERAL (SELECT pg_notify({channel}, {payload})) AS told) AS moved, \
                  (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"
        )
    }

    /// Binds [`Advance::sql`]'s parameters, in order.
    pub fn bind<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(self.name.to_owned())
            .bind(self.to.version)
            .bind(self.to.txid)
            .bind(self.to.position)
            .bind(self.to.max_position)
            .bind(self.to.events)
            .bind(self.from.txid)
            .bind(self.from.position)
            .bind(CHANNEL)
            .bind(Notice::payload(self.name, self.to, Some(self.tenants)))
    }

    /// Moves the checkpoint and tells listeners, in the caller's transaction (as
    /// [`advance`]); whether it stood at `from`.
    pub async fn in_transaction(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        advance(conn, self.name, self.from, self.to, self.tenants).await
    }
}

/// Whether `e` is the statement's own refusal (the checkpoint [`MOVED`] or
/// [`BUSY`]), after which nothing it wrote stays.
pub fn refused(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == MOVED || code == BUSY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> ProjectionCheckpoint {
        ProjectionCheckpoint {
            txid: 7,
            position: 42,
            max_position: 45,
            ..Default::default()
        }
    }

    #[test]
    fn a_notice_names_the_tenants_of_its_batch_and_reads_back() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let payload = Notice::payload("findings", &at(), Some(&[a, b]));
        assert_eq!(
            Notice::parse(&payload),
            Some(Notice {
                name: "findings".into(),
                at: at(),
                tenants: Some(vec![a, b])
            })
        );
    }

    #[test]
    fn a_notice_without_a_readable_tenant_list_means_every_tenant() {
        let wide: Vec<Uuid> = (0..=MAX_NAMED_TENANTS).map(|_| Uuid::new_v4()).collect();
        let payload = Notice::payload("findings", &at(), Some(&wide));
        assert!(payload.len() < 8000 && payload.ends_with(" *"), "{payload}");
        for payload in [
            payload.as_str(),
            "findings 7 42 45 *",
            // An earlier release sent no list.
            "findings 7 42 45",
            "findings 7 42 45 not-a-tenant",
        ] {
            let notice = Notice::parse(payload).unwrap();
            assert_eq!((notice.at, notice.tenants), (at(), None), "{payload}");
        }
        assert_eq!(Notice::parse("findings 7 x 45"), None);
        assert_eq!(Notice::parse("findings"), None);
    }
}
