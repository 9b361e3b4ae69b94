//! A replay's writes on a second connection while its fold goes on.
//!
//! A rebuild alternates two kinds of work: folding events in the process (one client
//! core) and writing the rows it let go of (one server core). Done in turn, each
//! leaves the other core idle: at 10M events, about 150 s of writes that nothing else
//! overlapped. Handed to this writer, a write-out runs on its own connection, in its
//! own transaction, while the fold carries on with the next events.
//!
//! Order is kept by running one write at a time: a write waits for the one before it,
//! and any write on the fold's own connection waits for them all
//! ([`WriteBehind::drain`]). While one is under way, the fold's connection only
//! reads: it writes nothing that a write behind could wait for while the fold waited
//! for that write. The rows of the write under way stay readable
//! ([`WriteBehind::row`]), so the fold never reads a row from a table that does not
//! have it yet.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use vulnledger_aggregates::SlaPolicy;

use super::{write, Deltas, Row};
use crate::ProjectionError;

/// What one write-out holds: rows the fold no longer keeps, what they change in the
/// counters, and sightings.
pub(super) struct WriteOut {
    pub rows: Arc<HashMap<Uuid, Row>>,
    /// Rows the tables have, to update.
    pub known: Vec<Uuid>,
    /// Rows new to the tables, appended, with their texts unless `texts` is false.
    pub new: Vec<Uuid>,
    pub texts: bool,
    pub deltas: Deltas,
    /// A tenant's new SLA policy, for the deadlines of all its rows in the tables,
    /// these included.
    pub policy: Option<(Uuid, SlaPolicy)>,
}

impl WriteOut {
    /// Sightings alone.
    pub fn sightings(sightings: HashSet<(Uuid, Uuid, Uuid)>) -> Self {
        Self {
            rows: Arc::default(),
            known: Vec::new(),
            new: Vec::new(),
            texts: false,
            deltas: Deltas {
                sightings,
                ..Deltas::default()
            },
            policy: None,
        }
    }

    /// As [`super::Fold::flush`] writes a replay's rows, in one transaction.
    async fn write(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let pick = |ids: &[Uuid]| -> Vec<&Row> { ids.iter().map(|id| &self.rows[id]).collect() };
        let (known, new) = (pick(&self.known), pick(&self.new));
        let mut tx = conn.begin().await?;
        write::rows(&mut tx, &known, false).await?;
        write::rows(&mut tx, &new, true).await?;
        write::deltas(&mut tx, &self.deltas).await?;
        if self.texts {
            write::texts(&mut tx, &new, true).await?;
        }
        write::sightings(&mut tx, &self.deltas.sightings, true).await?;
        if let Some((tenant, policy)) = &self.policy {
            write::change_policy(&mut tx, *tenant, policy).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

type Running = tokio::task::JoinHandle<(PgConnection, Result<(), ProjectionError>)>;

pub(super) struct WriteBehind {
    /// The connection, while no write is under way.
    idle: Option<PgConnection>,
    /// The write under way, which hands the connection back.
    running: Option<Running>,
    /// Its rows.
    rows: Arc<HashMap<Uuid, Row>>,
}

impl WriteBehind {
    pub fn new(conn: PgConnection) -> Self {
        Self {
            idle: Some(conn),
            running: None,
            rows: Arc::default(),
        }
    }

    /// The row as the write under way leaves it in the tables.
    pub fn row(&self, id: &Uuid) -> Option<&Row> {
        self.rows.get(id)
    }

    /// Starts writing `out` once the write before it is done.
    pub async fn start(&mut self, out: WriteOut) -> Result<(), ProjectionError> {
        self.drain().await?;
        let mut conn = self.idle.take().ok_or(ProjectionError::WriterLost)?;
        self.rows = out.rows.clone();
        self.running = Some(tokio::spawn(async move {
            let written = out.write(&mut conn).await;
            (conn, written)
        }));
        Ok(())
    }

    /// Waits until everything handed over is written and committed.
    pub async fn drain(&mut self) -> Result<(), ProjectionError> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        let (conn, written) = match running.await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Err(ProjectionError::WriterLost),
        };
        // A failed write leaves the connection in an unknown state; the rebuild
        // fails with it, and starts over.
        written?;
        self.idle = Some(conn);
        self.rows = Arc::default();
        Ok(())
    }
}

impl WriteBehind {
    /// Waits for the write under way, then closes the connection.
    pub async fn close(mut self) -> Result<(), ProjectionError> {
        self.drain().await?;
        if let Some(conn) = self.idle.take() {
            conn.close().await?;
        }
        Ok(())
    }
}

impl Drop for WriteBehind {
    /// A replay given up (its rebuild failed) stops its write: the shadow tables are
    /// dropped by the next rebuild anyway.
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.abort();
        }
    }
}
