//! A throwaway database `vulnledger_bench_<uuid>` on TEST_DATABASE_URL's server.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use uuid::Uuid;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The URL of the database `name` on TEST_DATABASE_URL's server.
pub fn url_of(name: &str) -> anyhow::Result<String> {
    let options: PgConnectOptions = admin_url()
        .parse()
        .with_context(|| "TEST_DATABASE_URL is not a PostgreSQL URL")?;
    Ok(options.database(name).to_url_lossy().to_string())
}

pub struct Scratch {
    admin: PgConnectOptions,
    pub name: String,
    pub options: PgConnectOptions,
}

impl Scratch {
    pub async fn create() -> anyhow::Result<Self> {
        let url = admin_url();
        let admin: PgConnectOptions = url
            .parse()
            .with_context(|| "TEST_DATABASE_URL is not a PostgreSQL URL")?;
        let admin = admin.disable_statement_logging();
        let name = format!("vulnledger_bench_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .with_context(|| format!("cannot reach PostgreSQL at TEST_DATABASE_URL ({url})"))?;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let options = admin.clone().database(&name);
        Ok(Self {
            admin,
            name,
            options,
        })
    }

    pub async fn pool(&self, max_connections: u32) -> anyhow::Result<PgPool> {
        self.pool_with(max_connections, self.options.clone()).await
    }

    pub async fn pool_with(
        &self,
        max_connections: u32,
        options: PgConnectOptions,
    ) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(max_connections)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?)
    }

    /// Drops the database, also while someone is still connected.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect_with(&self.admin).await?;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }
}

/// Runs `f` on a fresh database, in a task (so that a panic still drops it).
pub async fn in_scratch<T, F, Fut>(f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let scratch = match Scratch::create().await {
        Ok(s) => s,
        Err(e) => return Err(format!("{e:#}")),
    };
    let outcome = tokio::spawn(f(scratch.url())).await;
    if let Err(e) = scratch.drop_database().await {
        eprintln!("could not drop the scratch database: {e:#}");
    }
    match outcome {
        Ok(r) => r.map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("panicked: {e}")),
    }
}

/// Runs `f` in the database `name` (on TEST_DATABASE_URL's server), which is kept,
/// or, without a name, on a fresh database dropped afterwards (see [`in_scratch`]).
pub async fn in_named_or_scratch<T, F, Fut>(name: Option<&str>, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    match name {
        None => in_scratch(f).await,
        Some(name) => match url_of(name) {
            Ok(url) => f(url).await.map_err(|e| format!("{e:#}")),
            Err(e) => Err(format!("{e:#}")),
        },
    }
}
