//! The event store's identity: what tells its messages from another store's when
//! several stores publish to one NATS server (staging beside production, a test
//! database beside a developer's). The stream and its subjects are fixed by the
//! contract, so stores cannot be kept apart by subject; each message carries its
//! store in a header, and each worker's durable consumer is named after its store.

use sqlx::PgPool;
use uuid::Uuid;

/// This store's identity, made on first use. A copy of the database (which holds
/// its original's row) is told apart by the database it now lives in, and gets a
/// new identity: otherwise the copy's workers would share the original's durable
/// consumers, and each would take messages meant for the other.
pub async fn identity(pool: &PgPool) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO store_identity (id, database_oid) \
         SELECT gen_random_uuid(), oid FROM pg_database WHERE datname = current_database() \
         ON CONFLICT (only_row) DO UPDATE SET \
             id = CASE WHEN store_identity.database_oid = EXCLUDED.database_oid \
                       THEN store_identity.id ELSE EXCLUDED.id END, \
             database_oid = EXCLUDED.database_oid \
         RETURNING id",
    )
    .fetch_one(pool)
    .await
}
