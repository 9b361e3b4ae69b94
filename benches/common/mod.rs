//! What every benchmark shares: a scratch database on `TEST_DATABASE_URL`, and a
//! description of the machine printed above the figures.

// Each benchmark is its own crate and uses part of this.
#![allow(dead_code)]

use std::process::ExitCode;

use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The server URL with its database name replaced (query string kept).
pub fn database_url_for(server: &str, database: &str) -> String {
    let (without_query, query) = match server.split_once('?') {
        Some((url, q)) => (url, format!("?{q}")),
        None => (server, String::new()),
    };
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let base = match without_query[scheme_end..].find('/') {
        Some(slash) => &without_query[..scheme_end + slash],
        None => without_query,
    };
    format!("{base}/{database}{query}")
}

/// A database of its own for one run: `vulnledger_bench_<uuid>`, dropped at the end
/// unless kept, or an existing one reused (never dropped).
pub struct Scratch {
    admin: PgConnection,
    pub name: String,
    pub url: String,
    pub created: bool,
    drop_at_end: bool,
}

impl Scratch {
    pub async fn open(reuse: Option<&str>, keep: bool) -> Result<Self, String> {
        let server = server_url();
        let mut admin = PgConnection::connect(&server).await.map_err(|e| {
            format!(
                "TEST_DATABASE_URL must reach a PostgreSQL server (run scripts/services.sh): {e}"
            )
        })?;
        let (name, created) = match reuse {
            Some(name) => (name.to_owned(), false),
            None => {
                let name = format!("vulnledger_bench_{}", Uuid::new_v4().simple());
                sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| format!("cannot create the benchmark database: {e}"))?;
                (name, true)
            }
        };
        let drop_at_end = created && !keep;
        println!(
            "database: {name} ({})",
            if drop_at_end {
                "dropped at the end"
            } else {
                "kept"
            }
        );
        Ok(Self {
            url: database_url_for(&server, &name),
            admin,
            name,
            created,
            drop_at_end,
        })
    }

    /// Drops the database (or says how to), then turns the run's outcome into an exit
    /// code; a panic in the run is resumed after the database is gone.
    pub async fn finish(
        mut self,
        outcome: Result<anyhow::Result<ExitCode>, tokio::task::JoinError>,
    ) -> ExitCode {
        let name = &self.name;
        if self.drop_at_end {
            let dropped = sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                .execute(&mut self.admin)
                .await;
            if let Err(e) = dropped {
                eprintln!("could not drop {name}: {e}");
            }
        } else {
            println!("database {name} kept: DROP DATABASE \"{name}\" WITH (FORCE) when done");
        }
        match outcome {
            Ok(Ok(code)) => code,
            Ok(Err(e)) => {
                eprintln!("benchmark failed: {e:#}");
                ExitCode::FAILURE
            }
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => {
                eprintln!("benchmark task ended: {join}");
                ExitCode::FAILURE
            }
        }
    }
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Cores, CPU model, memory, load, and the PostgreSQL settings that move the figures:
/// printed, and returned as the same lines.
pub async fn print_machine(pool: &PgPool) -> anyhow::Result<String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let version: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(pool)
        .await?;
    let mut settings = Vec::new();
    for name in [
        "shared_buffers",
        "work_mem",
        "effective_cache_size",
        "synchronous_commit",
        // Random updates write a full page image on each page's first change after
        // a checkpoint: these decide how often that happens and what it costs.
        "max_wal_size",
        "checkpoint_timeout",
        "wal_compression",
        "ssl",
    ] {
        let v: String = sqlx::query_scalar(&format!("SHOW {name}"))
            .fetch_one(pool)
            .await?;
        settings.push(format!("{name}={v}"));
    }
    let encrypted: Option<bool> =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_optional(pool)
            .await?;
    let description = format!(
        "machine: {cores} cores ({cpu}), {:.1} GiB memory, load average {}\n\
         postgres: {version}\n\
         postgres settings: {}\n\
         connections to postgres: {}\n",
        mem_kib as f64 / 1024.0 / 1024.0,
        load_average(),
        settings.join(", "),
        if encrypted == Some(true) {
            "TLS (sslmode in TEST_DATABASE_URL)"
        } else {
            "plain TCP (sslmode=disable)"
        }
    );
    print!("{description}");
    Ok(description)
}
