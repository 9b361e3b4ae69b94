//! `vulnledger demo`: fills a tenant with history through the real command path.
//!
//! Nothing here writes an event or an index row itself. Scans are launched with
//! `CommandService` (as `POST /scans` does), reports are recorded with
//! [`crate::ingest::ingest`] (as `POST /scans/{id}/results` does, but with a back-dated
//! `at`), and triage goes through the finding and approval commands the HTTP handlers
//! send. So the demo exercises, and shows, exactly what the product does.
//!
//! * Without `--findings` ([`realistic`]): the real scanner reports in `demo/reports/`
//!   (embedded in the binary) are replayed as weekly scans of five assets over `--days`
//!   (default 56), later scans dropping some findings (auto-resolved) and bringing one
//!   back (reopened), with triage by the two demo users: confirmations, false positives,
//!   a LOW risk accepted directly, a HIGH/CRITICAL one accepted through an approval, and
//!   one approval left pending.
//! * With `--findings N` ([`synthetic`]): exactly N generated findings across hundreds of
//!   assets, three scanners and a realistic severity mix, over `--days` (default 90).
//!
//! Both are reproducible: a fixed seed drives every choice.

mod progress;
mod realistic;
mod rng;
mod synthetic;

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng as _;
use sqlx::PgPool;
use uuid::Uuid;
use vulnledger_aggregates::Role;

use crate::commands::{Actor, CommandContext, CommandService};
use crate::identity::{self, IdentityError, NewUser, PasswordPolicy};
use crate::store::EventStore;

pub use progress::ProgressMode;

pub const DEFAULT_TENANT: &str = "demo";
/// `--findings` above this is refused: it would take the better part of an hour.
pub const MAX_FINDINGS: u64 = 5_000_000;
/// Ten years of history is plenty for any dashboard.
pub const MAX_DAYS: u32 = 3650;
/// `--days` with `--findings`.
pub const SYNTHETIC_DAYS: u32 = 90;
/// `--days` without `--findings`: eight weekly rounds of scans.
pub const REALISTIC_DAYS: u32 = 56;

/// The command line's options, unchecked.
#[derive(Debug, Clone)]
pub struct Options {
    pub tenant: String,
    pub findings: Option<u64>,
    pub days: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tenant: DEFAULT_TENANT.to_owned(),
            findings: None,
            days: None,
        }
    }
}

/// What the demo will do, once the options are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub tenant: String,
    pub mode: Mode,
    /// The span of the history, ending now.
    pub days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replays the bundled real reports, with triage.
    Realistic,
    /// Exactly this many generated findings.
    Synthetic { findings: u64 },
}

impl Options {
    /// Checks everything that can be checked without the database, so that bad input
    /// fails before anything is written.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let tenant = self.tenant.trim().to_owned();
        check_slug(&tenant)?;
        let mode = match self.findings {
            None => Mode::Realistic,
            Some(n) if (1..=MAX_FINDINGS).contains(&n) => Mode::Synthetic { findings: n },
            Some(n) => anyhow::bail!("--findings must be between 1 and {MAX_FINDINGS} (got {n})"),
        };
        let days = match (self.days, mode) {
            (Some(d), _) if (1..=MAX_DAYS).contains(&d) => d,
            (Some(d), _) => anyhow::bail!("--days must be between 1 and {MAX_DAYS} (got {d})"),
            (None, Mode::Realistic) => REALISTIC_DAYS,
            (None, Mode::Synthetic { .. }) => SYNTHETIC_DAYS,
        };
        Ok(Plan { tenant, mode, days })
    }
}

/// The rule of `identity::create_tenant`, checked up front for a message that names the
/// option (the identity module still has the last word).
fn check_slug(slug: &str) -> anyhow::Result<()> {
    let ok = (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    anyhow::ensure!(
        ok,
        "--tenant {slug:?} is not a valid slug: use 2 to 63 lowercase letters, digits and inner hyphens"
    );
    Ok(())
}

/// A demo user; `password` is set only when this run created the user.
#[derive(Debug, Clone)]
pub struct DemoUser {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub password: Option<String>,
}

impl DemoUser {
    fn context(&self, tenant_id: Uuid, request_id: &str) -> CommandContext {
        CommandContext {
            tenant_id,
            actor: Actor::user(self.id, self.email.clone()),
            request_id: request_id.to_owned(),
        }
    }
}

/// The tenant the demo fills, and who acts in it.
#[derive(Debug, Clone)]
pub(crate) struct Cast {
    pub tenant_id: Uuid,
    pub slug: String,
    pub created: bool,
    pub admin: DemoUser,
    pub lead: DemoUser,
    /// Stamped on every event of this run, so its audit trail can be told apart.
    pub request_id: String,
}

impl Cast {
    /// Scans are recorded by the system on behalf of the scanners.
    fn scanner_context(&self) -> CommandContext {
        CommandContext {
            tenant_id: self.tenant_id,
            actor: Actor::system("demo"),
            request_id: self.request_id.clone(),
        }
    }
}

/// Triage performed by the realistic demo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Triage {
    pub confirmed: u64,
    pub false_positives: u64,
    /// LOW/MEDIUM risk accepted without an approval.
    pub risk_accepted: u64,
    /// HIGH/CRITICAL risk accepted through an approval.
    pub approvals_applied: u64,
    pub approvals_pending: u64,
    /// Steps that no longer applied (a second run on the same tenant).
    pub skipped: u64,
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub tenant_created: bool,
    pub users: Vec<DemoUser>,
    pub mode: Mode,
    pub days: u32,
    pub findings_created: u64,
    pub findings_resolved: u64,
    pub findings_reopened: u64,
    pub scans: u64,
    pub triage: Triage,
    /// Loading only (scans and triage), without setting up the tenant.
    pub load_time: Duration,
    pub elapsed: Duration,
}

/// What a loader reports back.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub findings_created: u64,
    pub findings_resolved: u64,
    pub findings_reopened: u64,
    pub scans: u64,
    pub triage: Triage,
}

/// Runs the demo against `pool` (migrated). Bad options fail before anything is written.
pub async fn run(
    pool: &PgPool,
    options: &Options,
    progress: ProgressMode,
) -> anyhow::Result<Summary> {
    let plan = options.plan()?;
    let started = Instant::now();
    let cast = cast(pool, &plan.tenant).await?;
    let commands = CommandService::new(EventStore::new(pool.clone()));
    let loading = Instant::now();
    let loaded = match plan.mode {
        Mode::Realistic => realistic::load(&commands, &cast, plan.days, progress).await?,
        Mode::Synthetic { findings } => {
            synthetic::load(&commands, &cast, findings, plan.days, progress).await?
        }
    };
    Ok(Summary {
        tenant_id: cast.tenant_id,
        tenant_slug: cast.slug,
        tenant_created: cast.created,
        users: vec![cast.admin, cast.lead],
        mode: plan.mode,
        days: plan.days,
        findings_created: loaded.findings_created,
        findings_resolved: loaded.findings_resolved,
        findings_reopened: loaded.findings_reopened,
        scans: loaded.scans,
        triage: loaded.triage,
        load_time: loading.elapsed(),
        elapsed: started.elapsed(),
    })
}

/// `vulnledger demo`: checks the options, connects, runs, prints the summary.
pub async fn run_cli(options: Options) -> anyhow::Result<()> {
    options.plan()?;
    let pool = crate::db::connect(
        &crate::config::database_url()?,
        synthetic::WORKERS as u32 + 1,
    )
    .await?;
    crate::db::migrate(&pool).await?;
    let summary = run(&pool, &options, ProgressMode::for_stderr()).await?;
    print!("{summary}");
    Ok(())
}

/// The tenant and its two users, created when absent.
async fn cast(pool: &PgPool, slug: &str) -> anyhow::Result<Cast> {
    let (tenant, created) = match identity::find_tenant_by_slug(pool, slug).await {
        Ok(tenant) => (tenant, false),
        Err(IdentityError::UnknownTenant(_)) => {
            let name = format!("{} (demo)", slug);
            let tenant = identity::create_tenant(pool, slug, &name)
                .await
                .with_context(|| format!("cannot create the tenant {slug:?}"))?;
            (tenant, true)
        }
        Err(e) => return Err(e.into()),
    };
    let admin = user(pool, slug, &format!("admin@{slug}.example"), Role::Admin).await?;
    let lead = user(
        pool,
        slug,
        &format!("lead@{slug}.example"),
        Role::SecurityLead,
    )
    .await?;
    Ok(Cast {
        tenant_id: tenant.id,
        slug: tenant.slug,
        created,
        admin,
        lead,
        request_id: format!("demo-{}", Uuid::now_v7()),
    })
}

/// The active user `email` of the tenant, or a new one with a random password.
async fn user(pool: &PgPool, slug: &str, email: &str, role: Role) -> anyhow::Result<DemoUser> {
    match identity::principal_of(pool, slug, email).await {
        Ok(existing) => Ok(DemoUser {
            id: existing.user_id,
            email: existing.email,
            role: existing.role,
            password: None,
        }),
        Err(IdentityError::UnknownUser(_)) => {
            let password = new_password(email);
            let created = identity::create_user(
                pool,
                NewUser {
                    tenant_slug: slug,
                    email,
                    password: &password,
                    role,
                },
            )
            .await
            .with_context(|| format!("cannot create the demo user {email}"))?;
            Ok(DemoUser {
                id: created.id,
                email: created.email,
                role,
                password: Some(password),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// 20 random letters and digits (about 119 bits), within the password policy.
fn new_password(email: &str) -> String {
    loop {
        let password: String = rand::rngs::OsRng
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(20)
            .map(char::from)
            .collect();
        if PasswordPolicy::check(&password, email).is_ok() {
            return password;
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.tenant_created {
            "created"
        } else {
            "exists, reused"
        };
        writeln!(f, "tenant {} ({}) {verb}", self.tenant_slug, self.tenant_id)?;
        for user in &self.users {
            match &user.password {
                Some(password) => writeln!(
                    f,
                    "  user {} ({}) created, password: {password}  (shown once)",
                    user.email, user.role
                )?,
                None => writeln!(
                    f,
                    "  user {} ({}) exists, password unchanged",
                    user.email, user.role
                )?,
            }
        }
        match self.mode {
            Mode::Realistic => writeln!(
                f,
                "replayed the bundled real reports over {} days",
                self.days
            )?,
            Mode::Synthetic { findings } => writeln!(
                f,
                "generated {} synthetic findings over {} days",
                thousands(findings),
                self.days
            )?,
        }
        writeln!(
            f,
            "  findings created:  {}",
            thousands(self.findings_created)
        )?;
        writeln!(
            f,
            "  findings resolved: {} (no longer reported by a later scan)",
            thousands(self.findings_resolved)
        )?;
        if self.findings_reopened > 0 {
            writeln!(
                f,
                "  findings reopened: {}",
                thousands(self.findings_reopened)
            )?;
        }
        writeln!(f, "  scans:             {}", thousands(self.scans))?;
        let t = &self.triage;
        if *t != Triage::default() {
            writeln!(
                f,
                "  triage: {} confirmed, {} false positive(s), {} risk accepted directly, \
                 {} accepted through an approval, {} approval(s) pending",
                t.confirmed,
                t.false_positives,
                t.risk_accepted,
                t.approvals_applied,
                t.approvals_pending
            )?;
            if t.skipped > 0 {
                writeln!(
                    f,
                    "  {} triage step(s) skipped: already done by an earlier run",
                    t.skipped
                )?;
            }
        }
        let load = self.load_time.as_secs_f64();
        match self.mode {
            Mode::Realistic => writeln!(f, "  elapsed: {:.1} s", self.elapsed.as_secs_f64()),
            Mode::Synthetic { .. } => writeln!(
                f,
                "  elapsed: {:.1} s ({:.1} s loading, {} findings/s)",
                self.elapsed.as_secs_f64(),
                load,
                thousands((self.findings_created as f64 / load.max(1e-3)).round() as u64)
            ),
        }
    }
}

/// 1234567 → "1,234,567".
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(tenant: &str, findings: Option<u64>, days: Option<u32>) -> Options {
        Options {
            tenant: tenant.to_owned(),
            findings,
            days,
        }
    }

    #[test]
    fn defaults_depend_on_the_mode() {
        let plan = Options::default().plan().unwrap();
        assert_eq!(plan.mode, Mode::Realistic);
        assert_eq!(plan.days, REALISTIC_DAYS);
        assert_eq!(plan.tenant, "demo");
        let plan = options("acme", Some(10), None).plan().unwrap();
        assert_eq!(plan.mode, Mode::Synthetic { findings: 10 });
        assert_eq!(plan.days, SYNTHETIC_DAYS);
    }

    #[test]
    fn bad_options_are_refused_with_the_option_named() {
        for (bad, option) in [
            (options("demo", Some(0), None), "--findings"),
            (options("demo", Some(MAX_FINDINGS + 1), None), "--findings"),
            (options("demo", None, Some(0)), "--days"),
            (options("demo", Some(5), Some(MAX_DAYS + 1)), "--days"),
            (options("Not A Slug", None, None), "--tenant"),
            (options("-demo", None, None), "--tenant"),
            (options("d", None, None), "--tenant"),
        ] {
            let error = bad.plan().unwrap_err().to_string();
            assert!(error.contains(option), "{bad:?}: {error}");
        }
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn passwords_follow_the_policy_and_differ() {
        let a = new_password("lead@demo.example");
        let b = new_password("lead@demo.example");
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        PasswordPolicy::check(&a, "lead@demo.example").unwrap();
    }
}
