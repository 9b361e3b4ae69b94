//! Measurements that say what limits the figures, run after the stores: how many
//! commits per second the server can do at all, ours with `synchronous_commit=off` (the
//! commit no longer waits for the WAL flush).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgPool;

use crate::fixture::Fixture;
use crate::peers::{ours::Ours, Store, Writer};
use crate::scratch::Scratch;
use crate::{measure, ms, Figure, Mode, Plan, POOL};

pub struct Diagnostic {
    pub label: &'static str,
    pub result: Result<Figure, String>,
}

/// One tiny row per transaction: what a commit costs with nothing else to do.
struct BareCommit {
    pool: PgPool,
}

#[async_trait]
impl Store for BareCommit {
    fn writer(&self, _index: usize) -> Box<dyn Writer> {
        Box::new(BareCommitWriter {
            pool: self.pool.clone(),
        })
    }

    async fn stored(&self) -> anyhow::Result<i64> {
        crate::peers::count(&self.pool, "commit_probe").await
    }
}

struct BareCommitWriter {
    pool: PgPool,
}

#[async_trait]
impl Writer for BareCommitWriter {
    async fn append(&mut self, batch: usize) -> anyhow::Result<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO commit_probe (n) SELECT generate_series(1, $1)")
            .bind(batch as i32)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(0)
    }
}

pub async fn run(plan: &Plan, fixture: Arc<Fixture>) -> Vec<Diagnostic> {
    let single = Mode {
        writers: 32,
        batch: 1,
    };
    let batched = Mode {
        writers: 32,
        batch: 100,
    };
    let mut out = Vec::new();
    let scratch = match Scratch::create().await {
        Ok(s) => s,
        Err(e) => {
            return vec![Diagnostic {
                label: "scratch database",
                result: Err(format!("{e:#}")),
            }]
        }
    };

    let bare = async {
        let pool = scratch.pool(POOL).await?;
        sqlx::raw_sql("CREATE TABLE commit_probe (n int NOT NULL)")
            .execute(&pool)
            .await?;
        anyhow::Ok((
            pool.clone(),
            Arc::new(BareCommit { pool }) as Arc<dyn Store>,
        ))
    }
    .await;
    for (label, mode) in [
        (
            "bare commit (one 4-byte row per transaction), 1 writer",
            Mode {
                writers: 1,
                batch: 1,
            },
        ),
        (
            "bare commit (one 4-byte row per transaction), 32 writers",
            single,
        ),
    ] {
        let result = match &bare {
            Ok((_, store)) => measure(store, mode, plan)
                .await
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(format!("{e:#}")),
        };
        print_line(label, &result);
        out.push(Diagnostic { label, result });
    }

    if let Ok((pool, _)) = &bare {
        pool.close().await;
    }
    let relaxed = async {
        let options = scratch
            .options
            .clone()
            .options([("synchronous_commit", "off")]);
        let pool = scratch.pool_with(POOL, options).await?;
        let store = Ours::open(pool.clone(), fixture.clone()).await?;
        anyhow::Ok((pool, Arc::new(store) as Arc<dyn Store>))
    }
    .await;
    for (label, mode) in [
        (
            "ours with synchronous_commit=off, 32 writers, 1 event",
            single,
        ),
        (
            "ours with synchronous_commit=off, 32 writers, 100 events",
            batched,
        ),
    ] {
        let result = match &relaxed {
            Ok((_, store)) => measure(store, mode, plan)
                .await
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(format!("{e:#}")),
        };
        print_line(label, &result);
        out.push(Diagnostic { label, result });
    }
    if let Ok((pool, _)) = &relaxed {
        pool.close().await;
    }
    if let Err(e) = scratch.drop_database().await {
        eprintln!("could not drop the scratch database: {e:#}");
    }
    out
}

fn print_line(label: &str, result: &Result<Figure, String>) {
    match result {
        Ok(f) => println!(
            "{:>13} | {label:<60} | {:>9.0} rows/s | p50 {:>8.2} ms | p99 {:>8.2} ms",
            "diagnostic",
            f.per_second(),
            ms(f.p50),
            ms(f.p99)
        ),
        Err(e) => println!("{:>13} | {label:<60} | FAILED: {e}", "diagnostic"),
    }
}
