//! Configuration from the environment, as api.md names it.
//!
//! Every value is parsed up front so that a typo fails at start with the variable's
//! name, not later in a request. `Debug` redacts secrets so the config can be logged.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("invalid environment variable {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub database_max_connections: u32,
    pub nats_url: Option<String>,
    /// `None` means "generate a random one per process" (tokens then die with it).
    pub jwt_secret: Option<String>,
    pub jwt_expires_in: Duration,
    pub jwt_refresh_expires_in: Duration,
    pub bind_addr: SocketAddr,
    pub rate_limit_auth: u32,
    pub rate_limit_tenant: u32,
    pub report_max_bytes: usize,
    /// Mark cookies `Secure` (set when TLS terminates in front of us).
    pub cookie_secure: bool,
    /// Run the event-driven processes (and, later, projection workers) inside
    /// `serve`; `serve --no-workers` turns it off for API-only replicas.
    pub run_workers: bool,
    /// How often due risk acceptances are looked for.
    pub risk_expiry_sweep: Duration,
}

impl Config {
    /// Reads everything `serve` needs.
    pub fn from_env() -> Result<Self, ConfigError> {
        // Read by each rebuild, also the one a worker starts after a projection's
        // version changed: checked here too, so that a bad value stops the process
        // at once rather than that worker, later.
        crate::rebuild::max_rows()?;
        Ok(Self {
            database_url: database_url()?,
            database_max_connections: parse("DATABASE_MAX_CONNECTIONS", 20, |v: &u32| {
                (1..=1000).contains(v)
            })?,
            nats_url: nats_url()?,
            jwt_secret: match optional("JWT_SECRET") {
                Some(s) if s.len() < 32 => {
                    return Err(ConfigError {
                        variable: "JWT_SECRET",
                        message: "must be at least 32 characters".into(),
                    })
                }
                other => other,
            },
            jwt_expires_in: duration("JWT_EXPIRES_IN", Duration::from_secs(15 * 60))?,
            jwt_refresh_expires_in: duration(
                "JWT_REFRESH_EXPIRES_IN",
                Duration::from_secs(7 * 24 * 3600),
            )?,
            bind_addr: parse("BIND_ADDR", "127.0.0.1:8080".parse().unwrap(), |_| true)?,
            rate_limit_auth: parse("RATE_LIMIT_AUTH", 10, |v: &u32| *v >= 1)?,
            rate_limit_tenant: parse("RATE_LIMIT_TENANT", 6000, |v: &u32| *v >= 1)?,
            report_max_bytes: parse("REPORT_MAX_BYTES", 32 * 1024 * 1024, |v: &usize| *v >= 1024)?,
            cookie_secure: parse("COOKIE_SECURE", false, |_| true)?,
            run_workers: true,
            risk_expiry_sweep: duration("RISK_EXPIRY_SWEEP", Duration::from_secs(5))?,
        })
    }
}

/// `DATABASE_URL` alone, for the commands that need nothing else.
pub fn database_url() -> Result<String, ConfigError> {
    let url = optional("DATABASE_URL").ok_or(ConfigError {
        variable: "DATABASE_URL",
        message: "is not set (e.g. postgres://postgres@127.0.0.1:5432/vulnledger)".into(),
    })?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError {
            variable: "DATABASE_URL",
            message: "must start with postgres:// or postgresql://".into(),
        });
    }
    Ok(url)
}

/// `NATS_URL`, if set: one URL or several separated by commas, credentials allowed
/// (see [`crate::bus::NatsUrl`]). Checked here so that a bad one stops the process
/// at start, with a message that does not repeat the URL (it may hold a secret).
pub fn nats_url() -> Result<Option<String>, ConfigError> {
    let Some(url) = optional("NATS_URL") else {
        return Ok(None);
    };
    crate::bus::NatsUrl::parse(&url).map_err(|e| ConfigError {
        variable: "NATS_URL",
        message: format!("{e:#}"),
    })?;
    Ok(Some(url))
}

/// A variable's value, trimmed; `None` when unset or blank.
pub(crate) fn optional(variable: &'static str) -> Option<String> {
    std::env::var(variable)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

pub(crate) fn parse<T>(
    variable: &'static str,
    default: T,
    valid: impl Fn(&T) -> bool,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    let Some(raw) = optional(variable) else {
        return Ok(default);
    };
    let value = raw.parse::<T>().map_err(|e| ConfigError {
        variable,
        message: format!("{raw:?}: {e}"),
    })?;
    if valid(&value) {
        Ok(value)
    } else {
        Err(ConfigError {
            variable,
            message: format!("{raw:?} is out of range"),
        })
    }
}

fn duration(variable: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match optional(variable) {
        None => Ok(default),
        Some(raw) => parse_duration(&raw).ok_or(ConfigError {
            variable,
            message: format!("{raw:?} is not a duration such as 900, 15m, 12h or 7d"),
        }),
    }
}

/// Accepts plain seconds or one number with a unit (`s`, `m`, `h`, `d`), like the
/// `expiresIn` strings other JWT tooling takes.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Hides the password of a connection URL so it can be printed.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Hides the credentials of `NATS_URL` (each server of a list): the password of
/// `nats://user:password@host`, and the token of `nats://token@host` entirely.
pub fn redact_nats_url(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let start = server.find("://").map_or(0, |scheme| scheme + 3);
            match server[start..].rfind('@') {
                Some(at) => {
                    let credentials = &server[start..start + at];
                    let shown = match credentials.find(':') {
                        Some(colon) => format!("{}:***", &credentials[..colon]),
                        None => "***".to_owned(),
                    };
                    format!("{}{shown}{}", &server[..start], &server[start + at..])
                }
                None => server.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("nats_url", &self.nats_url.as_deref().map(redact_nats_url))
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("jwt_expires_in", &self.jwt_expires_in)
            .field("jwt_refresh_expires_in", &self.jwt_refresh_expires_in)
            .field("bind_addr", &self.bind_addr)
            .field("rate_limit_auth", &self.rate_limit_auth)
            .field("rate_limit_tenant", &self.rate_limit_tenant)
            .field("report_max_bytes", &self.report_max_bytes)
            .field("cookie_secure", &self.cookie_secure)
            .field("run_workers", &self.run_workers)
            .field("risk_expiry_sweep", &self.risk_expiry_sweep)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(parse_duration("900"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
    }

    #[test]
    fn durations_reject_garbage_zero_and_overflow() {
        for bad in ["", "0", "m", "15x", "-5", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn nats_urls_are_printed_without_their_password_or_token() {
        assert_eq!(
            redact_nats_url("nats://alice:s3cr3t@nats:4222"),
            "nats://alice:***@nats:4222"
        );
        assert_eq!(
            redact_nats_url("nats://t0ken@nats:4222"),
            "nats://***@nats:4222"
        );
        assert_eq!(
            redact_nats_url("nats://a:p@ss@n1:4222, alice:pw@n2:4222,nats://n3:4222"),
            "nats://a:***@n1:4222, alice:***@n2:4222,nats://n3:4222"
        );
        assert_eq!(redact_nats_url("nats://nats:4222"), "nats://nats:4222");
    }

    #[test]
    fn urls_are_printed_without_their_password() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/vl"),
            "postgres://app:***@db:5432/vl"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/vl"),
            "postgres://postgres@127.0.0.1/vl"
        );
    }
}
