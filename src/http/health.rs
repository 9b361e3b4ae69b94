//! `/health` (liveness), `/ready` (can this process serve correct answers?) and
//! `/metrics` (Prometheus text).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};

use super::{AppState, Problem};

/// Liveness: answers as long as the process serves requests; it deliberately does
/// not touch the database (that is readiness).
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// The process-wide recorder (metrics are global; tests run many apps in one
/// process, and they share it).
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            )
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program's); then
        // ours only renders what we set on it directly.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Records every request's latency by route template (not raw path: ids would make
/// every request its own series).
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// How many unapplied events a projection may have before this process calls
/// itself not ready.
fn max_lag() -> i64 {
    std::env::var("READY_MAX_LAG")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(10_000)
}

/// Readiness: the database answers, NATS (when configured) accepts connections, and
/// every projection is within `READY_MAX_LAG` events of the store.
pub async fn ready(State(state): State<AppState>) -> Response {
    let mut ok = true;
    let database = match tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool),
    )
    .await
    {
        Ok(Ok(_)) => json!("ok"),
        Ok(Err(e)) => {
            ok = false;
            tracing::warn!(error = %e, "readiness: database");
            json!("unavailable")
        }
        Err(_) => {
            ok = false;
            json!("timeout")
        }
    };
    let nats = match &state.config.nats_url {
        None => json!("not configured (in-process bus)"),
        Some(url) => {
            let connect = crate::bus::connect(url, |options| {
                options.connection_timeout(Duration::from_secs(1))
            });
            match tokio::time::timeout(Duration::from_secs(2), connect).await {
                Ok(Ok(_client)) => json!("ok"),
                _ => {
                    ok = false;
                    json!("unavailable")
                }
            }
        }
    };
    let mut projections = serde_json::Map::new();
    match crate::rebuild::status(&state.pool).await {
        Ok(all) => {
            for s in all {
                let behind = s.lag > max_lag();
                ok &= !behind;
                projections.insert(
                    s.name.to_owned(),
                    json!({ "lag": s.lag, "position": s.checkpoint.map(|c| c.max_position),
                            "status": if behind { "behind" } else { "ok" } }),
                );
            }
        }
        Err(e) => {
            ok = false;
            tracing::warn!(error = %e, "readiness: projections");
        }
    }
    let checks = json!({ "database": database, "nats": nats, "projections": projections });
    if ok {
        return Json(json!({ "status": "ready", "checks": checks })).into_response();
    }
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready")
        .detail("a dependency of this process is unavailable or behind; see checks")
        .with("checks", checks)
        .into_response()
}

/// Prometheus text: request latency histograms, events appended, and, read at
/// scrape time, store, relay and projection positions, projection lag and cache hits.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let handle = recorder();
    if let Err(e) = scrape_positions(&state).await {
        tracing::warn!(error = %e, "metrics: cannot read positions");
    }
    let (hits, misses) = state.caches.stats();
    metrics::gauge!("vulnledger_cache_hits").set(hits as f64);
    metrics::gauge!("vulnledger_cache_misses").set(misses as f64);
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

async fn scrape_positions(state: &AppState) -> anyhow::Result<()> {
    let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&state.pool)
        .await?;
    metrics::gauge!("vulnledger_store_position").set(head.unwrap_or(0) as f64);
    let relay = crate::processes::load_checkpoint(&state.pool, crate::relay::NAME).await?;
    metrics::gauge!("vulnledger_relay_position").set(relay.position as f64);
    for s in crate::rebuild::status(&state.pool).await? {
        let at = s.checkpoint.unwrap_or_default();
        metrics::gauge!("vulnledger_projection_position", "projection" => s.name)
            .set(at.max_position as f64);
        metrics::gauge!("vulnledger_projection_lag_events", "projection" => s.name)
            .set(s.lag as f64);
    }
    Ok(())
}
