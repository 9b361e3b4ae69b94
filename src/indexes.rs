//! Command-side state kept in step with aggregates, in the transaction that appends
//! their events (see `commands::Inline`). Read models are built elsewhere, from
//! the event stream; these exist because commands must decide on exact state.

use sqlx::PgConnection;
use uuid::Uuid;
use vulnledger_aggregates::{Approval, ApprovalStatus, Finding, FindingStatus, Scan};

use crate::commands::Inline;
use crate::store::Alongside;

/// Status and risk-acceptance deadline of a finding, for imports and the expiry timer.
pub struct FindingIndex;

#[async_trait::async_trait]
impl Inline<Finding> for FindingIndex {
    /// The statement of [`alongside`](Inline::alongside), on its own (commands carry
    /// it in the append; this is for callers inside a transaction of their own).
    async fn apply(
        &self,
        conn: &mut PgConnection,
        tenant_id: Uuid,
        aggregate_id: &str,
        finding: &Finding,
    ) -> Result<(), sqlx::Error> {
        let Some(change) = self.alongside(tenant_id, aggregate_id, finding) else {
            return Ok(());
        };
        // Alone, its one argument is the first.
        sqlx::query(&change.sql.replace("$8", "$1"))
            .bind(change.args)
            .execute(conn)
            .await?;
        Ok(())
    }

    fn alongside(
        &self,
        tenant_id: Uuid,
        aggregate_id: &str,
        finding: &Finding,
    ) -> Option<Alongside> {
        Some(Alongside {
            sql: "UPDATE finding_index SET status = $8::jsonb->>'status', \
                      risk_expires_at = ($8::jsonb->>'risk_expires_at')::timestamptz \
                  WHERE tenant_id = ($8::jsonb->>'tenant_id')::uuid \
                    AND finding_id = ($8::jsonb->>'finding_id')::uuid",
            args: serde_json::json!({
                "status": finding.status.to_string(),
                // Microseconds, as a bound timestamptz would be stored.
                "risk_expires_at": risk_expires_at(finding)
                    .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                "tenant_id": tenant_id,
                "finding_id": aggregate_id.parse::<Uuid>().unwrap_or_default(),
            }),
        })
    }
}

/// When an accepted risk of `finding` expires; `None` unless it is RISK_ACCEPTED.
fn risk_expires_at(finding: &Finding) -> Option<chrono::DateTime<chrono::Utc>> {
    finding
        .risk_acceptance
        .as_ref()
        .filter(|_| finding.status == FindingStatus::RiskAccepted)
        .map(|r| r.expires_at)
}

/// One pending approval per finding, and the approvals list.
pub struct ApprovalIndex;

#[async_trait::async_trait]
impl Inline<Approval> for ApprovalIndex {
    async fn apply(
        &self,
        conn: &mut PgConnection,
        tenant_id: Uuid,
        aggregate_id: &str,
        approval: &Approval,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO approval_index \
               (tenant_id, approval_id, finding_id, status, requested_by, requested_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (approval_id) DO UPDATE SET status = EXCLUDED.status",
        )
        .bind(tenant_id)
        .bind(aggregate_id.parse::<Uuid>().unwrap_or_default())
        .bind(approval.finding_id)
        .bind(approval.status.to_string())
        .bind(approval.requested_by)
        .bind(approval.requested_at)
        .execute(&mut *conn)
        .await?;
        if approval.status == ApprovalStatus::Approved {
            // The approvals process manager makes the finding RISK_ACCEPTED after the
            // approval commits; a finding resolved or marked a false positive while
            // the request waited would never get there, and the approval would say
            // APPROVED for nothing. Its row is locked until this commits, so a status
            // change committed first is seen here, and one after it comes after the
            // acceptance (RISK_ACCEPTED can be resolved).
            sqlx::query(
                "SELECT CASE WHEN status IN ('OPEN', 'CONFIRMED') THEN 0 \
                             ELSE approval_finding_not_open(finding_id, status) END \
                 FROM finding_index WHERE tenant_id = $1 AND finding_id = $2 FOR UPDATE",
            )
            .bind(tenant_id)
            .bind(approval.finding_id)
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}

/// Scans by status and target, for the scans list.
pub struct ScanIndex;

#[async_trait::async_trait]
impl Inline<Scan> for ScanIndex {
    async fn apply(
        &self,
        conn: &mut PgConnection,
        tenant_id: Uuid,
        aggregate_id: &str,
        scan: &Scan,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO scan_index (tenant_id, scan_id, target, scanner, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, coalesce($6, now())) \
             ON CONFLICT (scan_id) DO UPDATE SET status = EXCLUDED.status",
        )
        .bind(tenant_id)
        .bind(aggregate_id.parse::<Uuid>().unwrap_or_default())
        .bind(&scan.target)
        .bind(&scan.scanner)
        .bind(scan.status.to_string())
        .bind(scan.created_at)
        .execute(conn)
        .await?;
        Ok(())
    }
}
