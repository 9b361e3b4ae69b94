//! The query side: reads of the projections' tables, and the cache in front of the
//! expensive ones.

pub mod assets;
pub mod dashboard;
pub mod findings;

use std::future::Future;
use std::time::Duration;

use moka::future::Cache;
use serde_json::Value;

/// Hot answers (KPIs, counts), keyed by what they depend on *including* how far the
/// read models of their tenant had moved when they were computed
/// ([`Freshness::tenant_epoch`](crate::freshness::Freshness::tenant_epoch)): once a
/// batch with that tenant's events commits, the key changes and an older answer can
/// no longer be served, while other tenants' batches leave it cached. Time-dependent
/// answers (SLA breach is measured against "now") carry the second in their key as
/// well.
#[derive(Clone)]
pub struct Caches {
    answers: Cache<String, Value>,
    hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    misses: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            answers: Cache::builder()
                .max_capacity(20_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            hits: Default::default(),
            misses: Default::default(),
        }
    }
}

impl Caches {
    /// The cached answer for `key`, computing it (once, even under concurrent
    /// misses) when absent. Errors are not cached.
    pub async fn get_or_compute<F>(&self, key: String, compute: F) -> anyhow::Result<Value>
    where
        F: Future<Output = anyhow::Result<Value>>,
    {
        use std::sync::atomic::Ordering::Relaxed;
        let mut computed = false;
        let result = self
            .answers
            .try_get_with(key, async {
                computed = true;
                compute.await
            })
            .await;
        if computed {
            self.misses.fetch_add(1, Relaxed);
        } else {
            self.hits.fetch_add(1, Relaxed);
        }
        // moka shares one error among every caller that waited on the key.
        result.map_err(|e| anyhow::anyhow!("{e:#}"))
    }

    /// (hits, misses) since start: for `/metrics`.
    pub fn stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}
