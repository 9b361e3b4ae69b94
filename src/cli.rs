//! The `vulnledger` command line. Each verb is a thin call into the library.

use std::io::{IsTerminal, Read};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use vulnledger_aggregates::Role;

use crate::app::Application;
use crate::auth::Scope;
use crate::config::{self, Config};
use crate::db;
use crate::identity::{self, NewUser};

#[derive(Debug, Parser)]
#[command(
    name = "vulnledger",
    version,
    about = "Event-sourced vulnerability management"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API and, unless told not to, the workers; applies pending migrations first.
    Serve {
        /// Serve the API only (other processes run the workers).
        #[arg(long)]
        no_workers: bool,
    },
    /// Run only the workers (projections and process managers) until SIGINT or
    /// SIGTERM: with NATS_URL they consume JetStream, else they follow the store.
    Worker,
    /// Run only the event relay (to NATS_URL) until SIGINT or SIGTERM.
    Relay,
    /// Inspect and rebuild the read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Export the audit log (the event store).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Print the OpenAPI 3.1 document.
    Openapi,
    /// Write one JSON Schema per event type (the committed catalogue in `schemas/`).
    Schemas {
        #[arg(long, default_value = "schemas")]
        out: std::path::PathBuf,
    },
    /// Fill a tenant with demo history through the real command path: the bundled real
    /// reports replayed with triage, or N synthetic findings with --findings.
    Demo {
        /// The tenant's slug; created with an admin and a security lead when absent.
        #[arg(long, default_value = crate::demo::DEFAULT_TENANT)]
        tenant: String,
        /// Generate this many synthetic findings instead of replaying the real reports.
        #[arg(long)]
        findings: Option<u64>,
        /// Days of history, ending now (default 90 with --findings, 56 without).
        #[arg(long)]
        days: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write a tenant's events, oldest first, as CSV or NDJSON.
    Export {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        /// Recorded at or after (ISO-8601, any precision).
        #[arg(long)]
        from: Option<String>,
        /// Recorded up to the end of this period (ISO-8601, any precision).
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value = "csv")]
        format: crate::audit::Format,
        /// A file (written completely or not at all); standard output when absent.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Every projection with its version and tables.
    List,
    /// Each projection's version, checkpoint and lag (events not applied yet).
    Status,
    /// Replay the event store into fresh tables and swap them in while the API keeps
    /// serving the old ones; all projections, or the one named.
    Rebuild { name: Option<String> },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its id.
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print its id. The password is read from standard input.
    Create {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        /// admin, security_lead, analyst or viewer.
        #[arg(long)]
        role: Role,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key for a user and print its id and the key (shown once).
    Create {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        /// Email of the user the key acts for; its scopes may not exceed their role.
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        /// Comma-separated, e.g. scans:write,findings:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<Scope>,
        /// RFC 3339 time after which the key stops working.
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // The event upcasters, built once before any command reads the store.
    crate::store::Upcasters::process();
    match cli.command {
        Command::Serve { no_workers } => {
            let mut config = Config::from_env()?;
            config.run_workers = !no_workers;
            let shutdown = CancellationToken::new();
            crate::shutdown::on_signal(shutdown.clone());
            Application::build(config).await?.run(shutdown).await
        }
        Command::Worker => {
            let config = Config::from_env()?;
            let pool = db::connect(&config.database_url, config.database_max_connections).await?;
            db::migrate(&pool).await?;
            let shutdown = CancellationToken::new();
            crate::shutdown::on_signal(shutdown.clone());
            tracing::info!("running projection workers and process managers");
            crate::processes::spawn(
                pool.clone(),
                crate::commands::CommandService::new(crate::store::EventStore::new(pool)),
                config.nats_url.clone(),
                shutdown.clone(),
                config.risk_expiry_sweep,
            );
            shutdown.cancelled().await;
            Ok(())
        }
        Command::Projections(command) => projections(command).await,
        Command::Audit(AuditCommand::Export {
            tenant,
            from,
            until,
            format,
            output,
        }) => {
            let range =
                crate::http::time_range::TimeRange::parse(from.as_deref(), until.as_deref())
                    .map_err(|e| anyhow::anyhow!("{}", crate::http::time_range::describe(&e)))?;
            let pool = connect().await?;
            let tenant = identity::find_tenant_by_slug(&pool, &tenant)
                .await
                .with_context(|| format!("no tenant with slug {tenant:?}"))?;
            let filter = crate::audit::AuditFilter {
                tenant: tenant.id,
                from: range.from,
                until: range.until,
                ..Default::default()
            };
            // Stopped on SIGINT or SIGTERM, so that an interrupted export removes
            // its temporary file.
            let stop = CancellationToken::new();
            crate::shutdown::on_signal(stop.clone());
            let exported =
                crate::audit::export_to(pool.clone(), filter, format, output.as_deref(), stop)
                    .await;
            // A connection the server dropped midway is tested and discarded by the
            // pool in the background, which logs a warning. Waiting for that here
            // keeps the reason for the failure the last line the command prints.
            pool.close().await;
            exported
        }
        Command::Relay => {
            let url =
                config::nats_url()?.context("NATS_URL is not set (e.g. nats://127.0.0.1:4222)")?;
            // The advisory lock and the notification listener each hold a connection
            // for as long as the relay runs; reads and the checkpoint need more.
            let pool = db::connect(&config::database_url()?, 4).await?;
            db::migrate(&pool).await?;
            let shutdown = CancellationToken::new();
            crate::shutdown::on_signal(shutdown.clone());
            tracing::info!(nats = %config::redact_nats_url(&url), "relaying events");
            crate::relay::run_nats(pool, url, shutdown).await;
            Ok(())
        }
        Command::Openapi => {
            let document = crate::http::openapi::document();
            println!("{}", document.to_pretty_json()?);
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Create {
            tenant,
            user,
            name,
            scopes,
            expires_at,
        }) => {
            let pool = connect().await?;
            let creator = identity::principal_of(&pool, &tenant, &user).await?;
            let created =
                crate::auth::api_keys::create(&pool, &creator, &name, scopes, expires_at).await?;
            println!("{}", created.view.id);
            println!("{}", created.key);
            Ok(())
        }
        Command::Schemas { out } => {
            let written = crate::schemas::write(&out)?;
            println!("{written} schemas written to {}", out.display());
            Ok(())
        }
        Command::Demo {
            tenant,
            findings,
            days,
        } => {
            crate::demo::run_cli(crate::demo::Options {
                tenant,
                findings,
                days,
            })
            .await
        }
        Command::Migrate => {
            let pool = connect().await?;
            db::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Tenant(TenantCommand::Create { slug, name }) => {
            let pool = connect().await?;
            let tenant = identity::create_tenant(&pool, &slug, &name).await?;
            println!("{}", tenant.id);
            Ok(())
        }
        Command::User(UserCommand::Create {
            tenant,
            email,
            role,
        }) => {
            let password = read_password()?;
            let pool = connect().await?;
            let user = identity::create_user(
                &pool,
                NewUser {
                    tenant_slug: &tenant,
                    email: &email,
                    password: &password,
                    role,
                },
            )
            .await?;
            println!("{}", user.id);
            Ok(())
        }
    }
}

async fn projections(command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::List => {
            for p in vulnledger_projections::all() {
                println!(
                    "{}\tversion {}\ttables {}",
                    p.name(),
                    p.version(),
                    p.tables().join(", ")
                );
            }
            Ok(())
        }
        ProjectionsCommand::Status => {
            let pool = connect().await?;
            println!("NAME\tVERSION\tSTORED\tPOSITION\tEVENTS\tLAG\tUPDATED");
            for s in crate::rebuild::status(&pool).await? {
                let stored = s
                    .checkpoint
                    .map_or("-".to_owned(), |c| c.version.to_string());
                let at = s.checkpoint.unwrap_or_default();
                let updated = s.updated_at.map_or("-".to_owned(), |u| u.to_rfc3339());
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    s.name, s.version, stored, at.max_position, at.events, s.lag, updated
                );
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { name } => {
            let chosen = match &name {
                None => vulnledger_projections::all(),
                Some(name) => vec![vulnledger_projections::named(name).with_context(|| {
                    let known: Vec<&str> = vulnledger_projections::all()
                        .iter()
                        .map(|p| p.name())
                        .collect();
                    format!(
                        "there is no projection called {name:?}; known: {}",
                        known.join(", ")
                    )
                })?],
            };
            let pool = connect().await?;
            for projection in chosen {
                let label = projection.name();
                let bar = std::io::stderr().is_terminal().then(|| {
                    let bar = indicatif::ProgressBar::new(0);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
                        )
                        .expect("a valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_message(format!("rebuilding {label}"));
                    bar
                });
                let mut last_log = std::time::Instant::now();
                let done = crate::rebuild::rebuild(&pool, projection.clone(), |p| {
                    if let Some(bar) = &bar {
                        bar.set_length(p.total.max(p.events) as u64);
                        bar.set_position(p.events as u64);
                    } else if last_log.elapsed() >= std::time::Duration::from_secs(2) {
                        last_log = std::time::Instant::now();
                        let rate = p.events as f64 / p.elapsed.as_secs_f64().max(0.001);
                        tracing::info!(
                            projection = label,
                            events = p.events,
                            total = p.total,
                            events_per_second = rate as u64,
                            "rebuilding"
                        );
                    }
                })
                .await?;
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                let seconds = done.elapsed.as_secs_f64();
                println!(
                    "{label}: {} events in {:.1} s ({:.0} events/s), swapped in at position {}",
                    done.checkpoint.events,
                    seconds,
                    done.checkpoint.events as f64 / seconds.max(0.001),
                    done.checkpoint.max_position
                );
                let vacuumed = crate::rebuild::vacuum(&pool, projection.as_ref()).await?;
                println!(
                    "{label}: tables vacuumed in {:.1} s (index-only scans read no table pages)",
                    vacuumed.as_secs_f64()
                );
            }
            Ok(())
        }
    }
}

/// The commands other than `serve` need only the database, and a schema that is
/// current: they apply pending migrations themselves so that order does not matter.
async fn connect() -> anyhow::Result<sqlx::PgPool> {
    let pool = db::connect(&config::database_url()?, 2).await?;
    db::migrate(&pool).await?;
    Ok(pool)
}

/// A password never goes on the command line (shell history, `ps`): it comes from
/// standard input, prompted without echo on a terminal, piped otherwise.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("Password: ").context("cannot read the password");
    }
    let mut raw = String::new();
    std::io::stdin()
        .read_to_string(&mut raw)
        .context("cannot read the password from standard input")?;
    let password = raw
        .strip_suffix("\r\n")
        .or_else(|| raw.strip_suffix('\n'))
        .unwrap_or(&raw);
    Ok(password.to_owned())
}
