//! The peer for the HTTP figures: what the cqrs-es demo shows a team to write. axum in
//! front of `postgres_es::postgres_cqrs`, our own `Finding` aggregate (it is a cqrs-es
//! `Aggregate`), and one `GenericQuery` keeping a `PostgresViewRepository` view of each
//! finding's status up to date inline, after the events commit.
//!
//! It does less per command than vulnledger: no authentication, no tenant, no If-Match,
//! no idempotency key, no metadata, no rate limit. The table says so beside its figures.
//!
//! Its import endpoint parses a report with vulnledger's own importer (a cqrs-es user
//! would need one too; this way both sides parse the same way) and sends one
//! `DetectFinding` per finding, 32 at a time. It has no fingerprint index, so it cannot
//! recognise a finding seen before: only first imports compare.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{patch, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use cqrs_es::persist::GenericQuery;
use cqrs_es::{AggregateError, EventEnvelope, View};
use futures::{StreamExt, TryStreamExt};
use postgres_es::{postgres_cqrs, PostgresCqrs, PostgresViewRepository};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;
use vulnledger_aggregates::{
    Finding, FindingCommand, FindingDetails, FindingEvent, FindingStatus, Severity,
};

/// The view's table, as postgres-es's `db/init.sql` declares its sample view.
pub const VIEW_SCHEMA: &str = "
CREATE TABLE finding_status_view
(
    view_id text                        NOT NULL,
    version bigint CHECK (version >= 0) NOT NULL,
    payload json                        NOT NULL,
    PRIMARY KEY (view_id)
);
";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FindingStatusView {
    asset: String,
    title: String,
    severity: Option<Severity>,
    status: Option<FindingStatus>,
    changed_at: Option<DateTime<Utc>>,
}

impl View<Finding> for FindingStatusView {
    fn update(&mut self, event: &EventEnvelope<Finding>) {
        match &event.payload {
            FindingEvent::FindingDetected(e) => {
                self.asset.clone_from(&e.details.asset);
                self.title.clone_from(&e.details.title);
                self.severity = Some(e.details.severity);
                self.status = Some(FindingStatus::Open);
                self.changed_at = Some(e.detected_at);
            }
            FindingEvent::FindingStatusChanged(e) => {
                self.status = Some(e.to);
                self.changed_at = Some(e.at);
            }
            _ => {}
        }
    }
}

/// The framework over `pool`'s database, with the view query.
pub fn framework(pool: PgPool) -> PostgresCqrs<Finding> {
    let views = Arc::new(PostgresViewRepository::<FindingStatusView, Finding>::new(
        "finding_status_view",
        pool.clone(),
    ));
    let mut query = GenericQuery::new(views);
    query.use_error_handler(Box::new(|e| eprintln!("cqrs-es view update failed: {e}")));
    postgres_cqrs(pool, vec![Box::new(query)], ())
}

/// Creates postgres-es's tables and the view's in an empty database.
pub async fn create_schema(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(crate::peers::postgres_es::SCHEMA)
        .execute(pool)
        .await?;
    sqlx::raw_sql(VIEW_SCHEMA).execute(pool).await?;
    Ok(())
}

#[derive(Deserialize)]
struct StatusChange {
    status: FindingStatus,
    justification: Option<String>,
}

async fn change_status(
    State(cqrs): State<Arc<PostgresCqrs<Finding>>>,
    Path(id): Path<String>,
    Json(body): Json<StatusChange>,
) -> StatusCode {
    let command = FindingCommand::ChangeStatus {
        status: body.status,
        justification: body.justification,
        at: Utc::now(),
    };
    match cqrs.execute(&id, command).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(AggregateError::UserError(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        Err(AggregateError::AggregateConflict) => StatusCode::CONFLICT,
        Err(e) => {
            eprintln!("cqrs-es command failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

#[derive(Deserialize)]
struct ImportTarget {
    target: String,
}

/// `POST /imports?target=T` with a report as the body: every finding detected as new.
async fn import(
    State(cqrs): State<Arc<PostgresCqrs<Finding>>>,
    Query(q): Query<ImportTarget>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let parsed = tokio::task::spawn_blocking(move || vulnledger::importers::parse(&body, None))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let scanner = parsed.format.to_string();
    let (scan_id, at) = (Uuid::new_v4(), Utc::now());
    let created = futures::stream::iter(parsed.findings.into_iter().map(|f| {
        let details = FindingDetails {
            fingerprint: format!(
                "{scanner}:{}:{}:{}:{}",
                q.target,
                f.cve
                    .as_deref()
                    .or(f.rule_id.as_deref())
                    .unwrap_or(&f.title),
                f.package.as_deref().unwrap_or_default(),
                f.location.as_deref().unwrap_or_default()
            ),
            asset: q.target.clone(),
            scanner: scanner.clone(),
            title: f.title,
            severity: f.severity,
            cvss: f.cvss,
            cve: f.cve,
            rule_id: f.rule_id,
            package: f.package,
            installed_version: f.installed_version,
            fixed_version: f.fixed_version,
            location: f.location,
            description: f.description,
            tags: f.tags,
        };
        let cqrs = cqrs.clone();
        async move {
            let command = FindingCommand::DetectFinding {
                details,
                scan_id,
                at,
            };
            cqrs.execute(&Uuid::new_v4().to_string(), command).await
        }
    }))
    .buffer_unordered(32)
    .try_fold(0u64, |n, ()| async move { Ok(n + 1) })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(serde_json::json!({ "created": created })))
}

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/findings/{id}/status", patch(change_status))
        .route("/imports", post(import))
        // Generated reports run to hundreds of megabytes.
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::new(framework(pool)))
}
