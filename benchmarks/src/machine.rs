//! What the figures were measured on: the machine and the PostgreSQL server.

use sqlx::PgPool;

/// Settings that decide how fast a commit is.
const SETTINGS: &[&str] = &[
    "shared_buffers",
    "synchronous_commit",
    "fsync",
    "wal_sync_method",
    "full_page_writes",
    "wal_buffers",
    "commit_delay",
    "max_wal_size",
    "checkpoint_timeout",
    "max_connections",
];

pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub load: String,
    pub postgres: String,
    pub settings: Vec<(String, String)>,
}

impl Machine {
    pub async fn describe(pool: &PgPool) -> anyhow::Result<Self> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let load = std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let postgres: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(pool)
            .await?;
        let postgres = postgres
            .split(" on ")
            .next()
            .unwrap_or(&postgres)
            .to_owned();
        let mut settings = Vec::new();
        for name in SETTINGS {
            let value: String = sqlx::query_scalar("SELECT current_setting($1)")
                .bind(name)
                .fetch_one(pool)
                .await?;
            settings.push(((*name).to_owned(), value));
        }
        Ok(Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            memory_gib: memory_kib / 1024.0 / 1024.0,
            load,
            postgres,
            settings,
        })
    }

    /// Described through a scratch database of its own, dropped again.
    pub async fn on_scratch() -> anyhow::Result<Self> {
        let scratch = crate::scratch::Scratch::create().await?;
        let described = async {
            let pool = scratch.pool(1).await?;
            let m = Self::describe(&pool).await;
            pool.close().await;
            m
        }
        .await;
        scratch.drop_database().await?;
        described
    }

    pub fn markdown(&self) -> String {
        let settings = self
            .settings
            .iter()
            .map(|(k, v)| format!("`{k}` {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "- {} cores ({}), {:.1} GiB memory; load average {} when the run started.\n\
             - {}, on the same machine, reached over loopback TCP; {}.\n",
            self.cores, self.cpu, self.memory_gib, self.load, self.postgres, settings
        )
    }
}

/// The peak resident set (VmHWM) in a `/proc/<pid>/status` file, in MB; `None` when the
/// file is gone (the process exited) or has no such line.
pub fn peak_rss_mb(status_file: &str) -> Option<f64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
