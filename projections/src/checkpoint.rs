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
