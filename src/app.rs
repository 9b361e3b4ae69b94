//! Builds the running product from a config: pool, migrations, state, listener.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::jwt::JwtKeys;
use crate::auth::AuthCaches;
use crate::commands::CommandService;
use crate::config::Config;
use crate::db;
use crate::http::rate_limit::RateLimits;
use crate::http::{self, AppState};
use crate::store::{EventStore, Upcasters};

/// A bound, migrated application, ready to serve. Tests build one on port 0.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if config.jwt_secret.is_none() {
            tracing::warn!(
                "JWT_SECRET is not set: using a random secret, so tokens die with this process"
            );
        }
        // Built once, before anything reads an event; every reader of the store
        // (aggregates, relay, projections, live feed, audit) applies this registry.
        let upcasters = Upcasters::process();
        tracing::debug!(upcasters = upcasters.len(), "event upcasters registered");
        let pool = db::connect(&config.database_url, config.database_max_connections).await?;
        db::migrate(&pool).await?;
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("cannot listen on BIND_ADDR {}", config.bind_addr))?;
        let secret = config.jwt_secret.clone().map_or_else(
            || {
                let mut bytes = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
                bytes.to_vec()
            },
            String::into_bytes,
        );
        tokio::task::spawn_blocking(crate::auth::sessions::prepare)
            .await
            .context("preparing the login timing hash")?;
        // Installed before the first request, so that request is counted too.
        crate::http::health::recorder();
        let auth_caches = AuthCaches::default();
        auth_caches.listen(pool.clone());
        let state = AppState {
            commands: CommandService::new(EventStore::new(pool.clone())),
            jwt: Arc::new(JwtKeys::new(&secret, config.jwt_expires_in)),
            auth_caches,
            rate_limits: RateLimits::new(config.rate_limit_auth, config.rate_limit_tenant),
            live: crate::live::LiveFeed::default(),
            sockets: Default::default(),
            freshness: crate::freshness::Freshness::new(pool.clone()),
            caches: crate::read_models::Caches::default(),
            pool,
            config: Arc::new(config),
        };
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        self.state
            .live
            .run(self.state.pool.clone(), shutdown.clone());
        self.state.freshness.run(shutdown.clone());
        if self.state.config.run_workers {
            crate::processes::spawn(
                self.state.pool.clone(),
                self.state.commands.clone(),
                self.state.config.nats_url.clone(),
                shutdown.clone(),
                self.state.config.risk_expiry_sweep,
            );
            // Without NATS the relay would feed an in-process bus that nothing in
            // `serve` subscribes to (the workers and the live feed follow the store
            // itself): reading every event again for nobody. Embedders that want
            // the bus call `relay::spawn` and keep its sender.
            if let Some(url) = &self.state.config.nats_url {
                crate::relay::spawn(self.state.pool.clone(), Some(url.clone()), shutdown.clone())
                    .await
                    .context("starting the event relay")?;
            }
        }
        tracing::info!(%addr, "vulnledger is listening");
        axum::serve(
            self.listener,
            http::router(self.state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the HTTP server failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}
