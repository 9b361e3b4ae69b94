//! Shared test harness: every test gets its own freshly migrated database on the
//! real PostgreSQL server (zero2prod style), so tests run in parallel and never see
//! each other's rows. `scripts/test.sh` drops leftovers before each run.
#![allow(dead_code)]

pub mod api;
pub mod nats;

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vulnledger::app::Application;
use vulnledger::config::Config;
use vulnledger_aggregates::Role;

pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    pub url: String,
}

/// Creates `vulnledger_test_<uuid>` and applies the migrations.
pub async fn fresh_db() -> TestDb {
    let server = server_url();
    let name = format!("vulnledger_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server)
        .await
        .expect("TEST_DATABASE_URL must reach a PostgreSQL server (run scripts/services.sh)");
    sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let options: PgConnectOptions = server.parse().expect("valid TEST_DATABASE_URL");
    let options = options.database(&name);
    let pool = PgPoolOptions::new()
        .max_connections(30)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .expect("connect to test database");
    vulnledger::db::migrate(&pool)
        .await
        .expect("migrations apply");
    let url = database_url_for(&server, &name);
    TestDb { pool, name, url }
}

/// The server URL with its database name replaced.
pub fn database_url_for(server: &str, database: &str) -> String {
    let (base, _) = match server.rsplit_once('/') {
        Some((base, rest)) if !base.ends_with('/') => (base.to_owned(), rest),
        _ => (server.trim_end_matches('/').to_owned(), ""),
    };
    let query = server
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{base}/{database}{query}")
}

pub fn test_config(database_url: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        database_max_connections: 10,
        nats_url: None,
        jwt_secret: Some("test-secret-test-secret-test-secret!".to_owned()),
        jwt_expires_in: Duration::from_secs(900),
        jwt_refresh_expires_in: Duration::from_secs(7 * 86_400),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        // High so that tests logging in many times are not limited; the limit itself
        // is tested with `spawn_app_with`.
        rate_limit_auth: 1000,
        rate_limit_tenant: 6000,
        report_max_bytes: 32 * 1024 * 1024,
        cookie_secure: false,
        run_workers: true,
        risk_expiry_sweep: Duration::from_millis(200),
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub db: TestDb,
    pub client: reqwest::Client,
    /// The server's answer cache, to tell a cached answer from a computed one.
    pub caches: vulnledger::read_models::Caches,
    shutdown: CancellationToken,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The whole application on port 0 against a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Same, with the configuration adjusted first (e.g. tight rate limits).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = fresh_db().await;
    let mut config = test_config(&db.url);
    adjust(&mut config);
    let app = Application::build(config)
        .await
        .expect("application builds");
    let address = app.local_addr();
    let caches = app.state().caches.clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        address,
        db,
        caches,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        shutdown,
    }
}

/// A second server on the same database, like another replica behind a balancer.
pub struct Replica {
    pub address: SocketAddr,
    shutdown: CancellationToken,
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Stops this server and starts a new one on the same database, as a deploy or
    /// a crash and restart would.
    pub async fn restart(mut self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        self.shutdown.cancel();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut config = test_config(&self.db.url);
        adjust(&mut config);
        let app = Application::build(config)
            .await
            .expect("application builds");
        let address = app.local_addr();
        self.caches = app.state().caches.clone();
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        self.address = address;
        self.shutdown = shutdown;
        self
    }

    pub async fn replica(&self) -> Replica {
        let app = Application::build(test_config(&self.db.url))
            .await
            .expect("replica builds");
        let address = app.local_addr();
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        Replica { address, shutdown }
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub token: String,
    pub refresh_token: String,
}

impl TestApp {
    /// Creates the tenant if needed; returns its id.
    pub async fn tenant(&self, slug: &str) -> Uuid {
        match vulnledger::identity::find_tenant_by_slug(&self.db.pool, slug).await {
            Ok(t) => t.id,
            Err(_) => {
                vulnledger::identity::create_tenant(&self.db.pool, slug, slug)
                    .await
                    .expect("tenant")
                    .id
            }
        }
    }

    /// Creates a user with [`PASSWORD`] in `slug` (creating the tenant too).
    pub async fn user(&self, slug: &str, email: &str, role: Role) -> Uuid {
        self.tenant(slug).await;
        vulnledger::identity::create_user(
            &self.db.pool,
            vulnledger::identity::NewUser {
                tenant_slug: slug,
                email,
                password: PASSWORD,
                role,
            },
        )
        .await
        .expect("user")
        .id
    }

    pub async fn login(&self, email: &str) -> Session {
        let response = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login of {email}");
        let body: serde_json::Value = response.json().await.unwrap();
        Session {
            user_id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
            tenant_id: body["user"]["tenantId"].as_str().unwrap().parse().unwrap(),
            email: email.to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
            refresh_token: body["refreshToken"].as_str().unwrap().to_owned(),
        }
    }

    /// A new user of `role` in `slug`, signed in.
    pub async fn signed_in(&self, slug: &str, role: Role) -> Session {
        let email = format!("{}-{}@{slug}.test", role, Uuid::new_v4().simple());
        self.user(slug, &email, role).await;
        self.login(&email).await
    }

    /// An API key with `scopes`, created by `session`; returns the whole key.
    pub async fn api_key(&self, session: &Session, scopes: &[&str]) -> String {
        let response = self
            .client
            .post(self.url("/api/v1/api-keys"))
            .bearer_auth(&session.token)
            .json(&serde_json::json!({ "name": "ci", "scopes": scopes }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "api key creation");
        let body: serde_json::Value = response.json().await.unwrap();
        body["key"].as_str().unwrap().to_owned()
    }
}
