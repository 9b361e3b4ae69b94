//! Event-driven processes that act on the domain by themselves: they follow the
//! ordered event stream from a durable checkpoint and issue commands.
//!
//! * approvals: an `ApprovalApproved` makes its finding RISK_ACCEPTED. It is a
//!   [`Consumer`] like the projections (JetStream durable consumer `approvals` with
//!   `NATS_URL`, the store's tail without). The finding command names the approval,
//!   so re-handling an event after a crash (between the command and the checkpoint)
//!   is a no-op, never a second acceptance.
//! * risk expiry: a durable timer. Deadlines live in the finding index, written with
//!   the finding's events; a sweep expires what is due. A restart loses nothing, and
//!   a revoked or renewed acceptance simply no longer matches.
//!
//! One active instance of each at a time, by PostgreSQL advisory lock, so any number
//! of `serve` processes may run them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vulnledger_aggregates::{Approval, ApprovalApproved, Finding, FindingCommand};
use vulnledger_projections::{ProjectedEvent, ProjectionCheckpoint};

use crate::commands::{Actor, CommandContext, CommandError, CommandService};
use crate::indexes::FindingIndex;
use crate::projector::Consumer;
use crate::store::Checkpoint;

const APPROVALS: &str = "approvals";
const EXPIRY_LOCK: &str = "risk-expiry";

/// Starts every worker: the projections and the approvals process manager (each a
/// [`Consumer`] of the event stream: JetStream with `nats_url`, the store without),
/// and the expiry sweep. They stop when `shutdown` is cancelled.
pub fn spawn(
    pool: PgPool,
    commands: CommandService,
    nats_url: Option<String>,
    shutdown: CancellationToken,
    sweep: Duration,
) {
    let approvals: Arc<dyn Consumer> = Arc::new(Approvals {
        commands: commands.clone(),
    });
    crate::projector::spawn(pool.clone(), nats_url, vec![approvals], shutdown.clone());
    tokio::spawn(supervise(
        EXPIRY_LOCK,
        pool,
        shutdown,
        move |pool, shutdown| run_expiry(pool, commands.clone(), shutdown, sweep),
    ));
}

/// Holds the process's advisory lock while running it; restarts it after an error.
pub(crate) async fn supervise<F, Fut>(
    name: &'static str,
    pool: PgPool,
    shutdown: CancellationToken,
    run: F,
) where
    F: Fn(PgPool, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    while !shutdown.is_cancelled() {
        let attempt = async {
            let mut lock = pool.acquire().await?;
            let key = format!("vulnledger:{name}");
            let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(&key)
                .fetch_one(&mut *lock)
                .await?;
            if !held {
                return Ok::<bool, anyhow::Error>(false);
            }
            tracing::info!(process = name, "process is active here");
            let result = run(pool.clone(), shutdown.clone()).await;
            // Closing the connection would release it too; say so explicitly.
            let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                .bind(&key)
                .execute(&mut *lock)
                .await;
            result.map(|()| true)
        };
        match attempt.await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::error!(process = name, error = %e, "process failed; restarting"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

pub async fn load_checkpoint(pool: &PgPool, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT txid, position FROM process_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(
        row.map_or(Checkpoint::START, |(txid, position)| Checkpoint {
            txid,
            position,
        }),
    )
}

pub async fn save_checkpoint(pool: &PgPool, name: &str, at: Checkpoint) -> Result<(), sqlx::Error> {
    // A checkpoint lost in a crash only means some events are handled again, which
    // every process here tolerates (the relay's messages are deduplicated by id), so
    // its commit does not wait for the WAL flush: `set_config(..., true)` lasts for
    // this statement's own transaction.
    sqlx::query(
        "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)) \
         INSERT INTO process_checkpoints (name, txid, position) \
         SELECT $1, $2, $3 FROM relaxed \
         ON CONFLICT (name) DO UPDATE SET txid = $2, position = $3, updated_at = now()",
    )
    .bind(name)
    .bind(at.txid)
    .bind(at.position)
    .execute(pool)
    .await?;
    Ok(())
}

/// The approvals process manager: an `ApprovalApproved` makes its finding
/// RISK_ACCEPTED. Commands are idempotent per approval, so handling a batch again
/// after a crash between the commands and the checkpoint changes nothing.
struct Approvals {
    commands: CommandService,
}

#[async_trait::async_trait]
impl Consumer for Approvals {
    fn name(&self) -> &str {
        APPROVALS
    }

    fn only(&self) -> Option<&'static str> {
        Some(Approval::TYPE)
    }

    async fn start(&self, pool: &PgPool) -> anyhow::Result<ProjectionCheckpoint> {
        let at = load_checkpoint(pool, APPROVALS).await?;
        Ok(ProjectionCheckpoint {
            txid: at.txid,
            position: at.position,
            max_position: at.position,
            ..Default::default()
        })
    }

    async fn handle(
        &self,
        pool: &PgPool,
        at: &ProjectionCheckpoint,
        events: Vec<ProjectedEvent>,
    ) -> anyhow::Result<ProjectionCheckpoint> {
        let Some((fresh, next)) = crate::projector::after(at, events) else {
            return Ok(*at);
        };
        let approved: Vec<&ProjectedEvent> = fresh.iter().filter(is_approved).collect();
        if approved.is_empty() {
            // Nothing done, so nothing to lose: the stored checkpoint stays where it
            // is, and a restart reads approval events from there again, which costs
            // a filtered read and handles nothing twice.
            return Ok(next);
        }
        for event in approved {
            apply_approval(&self.commands, event).await?;
        }
        save_checkpoint(
            pool,
            APPROVALS,
            Checkpoint {
                txid: next.txid,
                position: next.position,
            },
        )
        .await?;
        Ok(next)
    }
}

fn is_approved(event: &&ProjectedEvent) -> bool {
    event.aggregate_type == Approval::TYPE && event.event_type == "ApprovalApproved"
}

async fn apply_approval(commands: &CommandService, event: &ProjectedEvent) -> anyhow::Result<()> {
    let approved: ApprovalApproved = serde_json::from_value(event.data.clone())?;
    let approval_id: Uuid = event.aggregate_id.parse()?;
    let ctx = CommandContext {
        tenant_id: event.tenant_id,
        actor: Actor::system("approvals"),
        request_id: event.request_id.clone().unwrap_or_default(),
    };
    let finding_id = approved.finding_id.to_string();
    match commands
        .execute_with::<Finding>(
            &ctx,
            &finding_id,
            None,
            approved.accept_risk(approval_id),
            &(),
            &FindingIndex,
        )
        .await
    {
        Ok(done) if !done.events.is_empty() => {
            tracing::info!(%approval_id, finding = %finding_id, "approved risk acceptance applied");
            Ok(())
        }
        Ok(_) => Ok(()),
        // The finding moved on meanwhile (e.g. it was resolved): the approval can no
        // longer apply. That is an outcome, not a fault; the event stays in the log.
        Err(CommandError::Rejected(e)) => {
            tracing::warn!(%approval_id, finding = %finding_id, error = %e, "approval cannot apply");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn run_expiry(
    pool: PgPool,
    commands: CommandService,
    shutdown: CancellationToken,
    sweep: Duration,
) -> anyhow::Result<()> {
    loop {
        expire_due(&pool, &commands).await?;
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(sweep) => {}
        }
    }
}

/// Expires every risk acceptance whose deadline has passed; returns how many.
pub async fn expire_due(pool: &PgPool, commands: &CommandService) -> anyhow::Result<usize> {
    let mut expired = 0;
    loop {
        let due = sqlx::query(
            "SELECT tenant_id, finding_id, risk_expires_at FROM finding_index \
             WHERE status = 'RISK_ACCEPTED' AND risk_expires_at <= now() \
             ORDER BY risk_expires_at LIMIT 200",
        )
        .fetch_all(pool)
        .await?;
        if due.is_empty() {
            return Ok(expired);
        }
        for row in &due {
            let tenant_id: Uuid = row.try_get("tenant_id")?;
            let finding_id: Uuid = row.try_get("finding_id")?;
            let expires_at: DateTime<Utc> = row.try_get("risk_expires_at")?;
            let ctx = CommandContext {
                tenant_id,
                actor: Actor::system("risk-expiry"),
                request_id: String::new(),
            };
            let done = commands
                .execute_with::<Finding>(
                    &ctx,
                    &finding_id.to_string(),
                    None,
                    FindingCommand::ExpireRiskAcceptance {
                        expires_at,
                        at: Utc::now(),
                    },
                    &(),
                    &FindingIndex,
                )
                .await;
            match done {
                Ok(done) if !done.events.is_empty() => expired += 1,
                Ok(_) => {
                    // Stale index row (should not happen): clear it so the sweep moves on.
                    sqlx::query(
                        "UPDATE finding_index SET risk_expires_at = NULL \
                         WHERE tenant_id = $1 AND finding_id = $2 AND risk_expires_at = $3",
                    )
                    .bind(tenant_id)
                    .bind(finding_id)
                    .bind(expires_at)
                    .execute(pool)
                    .await?;
                }
                Err(e) => return Err(anyhow::anyhow!("expiring {finding_id}: {e}")),
            }
        }
    }
}
