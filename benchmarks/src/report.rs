//! The table printed at the end, and the docs section `scripts/bench.sh` puts into
//! docs/benchmarks.md.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::diagnostics::Diagnostic;
use crate::fixture::Fixture;
use crate::machine::Machine;
use crate::peers::Peer;
use crate::{ms, Figure, Mode, Plan};

/// The peers' crates as pinned in benchmarks/Cargo.toml.
pub const VERSIONS: &str = "postgres-es 0.5.0 (cqrs-es 0.5.0), esrs 0.18.0, disintegrate 4.0.0 \
                            with disintegrate-postgres 4.0.1";

/// Each store's figures, mode by mode (an error says why a mode has none).
pub type Table = [(Peer, Vec<(Mode, Result<Figure, String>)>)];

pub struct Report<'a> {
    pub plan: &'a Plan,
    pub machine: &'a Machine,
    pub fixture: &'a Fixture,
    pub started: DateTime<Utc>,
    pub table: &'a Table,
    pub diagnostics: &'a [Diagnostic],
}

/// 12345.6 -> "12,346"
pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn short_error(e: &str) -> String {
    let e = e.replace('|', "/");
    let mut s: String = e.chars().take(80).collect();
    if e.chars().count() > 80 {
        s.push('…');
    }
    format!("failed: {s}")
}

impl Report<'_> {
    fn figure(&self, peer: Peer, mode: Mode) -> Option<&Result<Figure, String>> {
        self.table
            .iter()
            .find(|(p, _)| *p == peer)
            .and_then(|(_, rows)| rows.iter().find(|(m, _)| *m == mode))
            .map(|(_, r)| r)
    }

    fn verdict(&self, mode: Mode) -> (String, String) {
        let Some(target) = mode.target() else {
            return ("–".to_owned(), "–".to_owned());
        };
        let target_text = format!("≥ {}", thousands(target));
        let verdict = match self.figure(Peer::Ours, mode) {
            Some(Ok(f)) => {
                let rate = f.per_second();
                if rate >= target {
                    "**met**".to_owned()
                } else {
                    format!(
                        "**missed** by {} ({:.0}% of target)",
                        thousands(target - rate),
                        100.0 * rate / target
                    )
                }
            }
            _ => "not measured".to_owned(),
        };
        (target_text, verdict)
    }

    /// Events per second, then latency, as Markdown tables.
    pub fn tables(&self) -> String {
        let mut out = String::new();
        let header: Vec<&str> = Peer::ALL.iter().map(|p| p.name()).collect();
        let _ = writeln!(
            out,
            "Events per second (higher is better):\n\n| mode | {} | target | ours against target |",
            header.join(" | ")
        );
        let _ = writeln!(out, "|---|{}---|---|", "---:|".repeat(Peer::ALL.len()));
        for mode in Mode::ALL {
            let cells: Vec<String> = Peer::ALL
                .iter()
                .map(|p| match self.figure(*p, mode) {
                    Some(Ok(f)) => thousands(f.per_second()),
                    Some(Err(e)) => short_error(e),
                    None => "–".to_owned(),
                })
                .collect();
            let (target, verdict) = self.verdict(mode);
            let _ = writeln!(
                out,
                "| {} | {} | {target} | {verdict} |",
                mode.label(),
                cells.join(" | ")
            );
        }
        let _ = writeln!(
            out,
            "\nLatency of one append, p50 / p99 in ms (lower is better):\n\n| mode | {} |",
            header.join(" | ")
        );
        let _ = writeln!(out, "|---|{}", "---:|".repeat(Peer::ALL.len()));
        for mode in Mode::ALL {
            let cells: Vec<String> = Peer::ALL
                .iter()
                .map(|p| match self.figure(*p, mode) {
                    Some(Ok(f)) => format!("{:.2} / {:.2}", ms(f.p50), ms(f.p99)),
                    Some(Err(_)) => "failed".to_owned(),
                    None => "–".to_owned(),
                })
                .collect();
            let _ = writeln!(out, "| {} | {} |", mode.label(), cells.join(" | "));
        }
        let retried: Vec<String> = self
            .table
            .iter()
            .flat_map(|(p, rows)| rows.iter().map(move |(m, r)| (p, m, r)))
            .filter_map(|(p, m, r)| match r {
                Ok(f) if f.retries > 0 => Some(format!(
                    "{} in \"{}\": {} of {} appends",
                    p.name(),
                    m.label(),
                    f.retries,
                    f.appends
                )),
                _ => None,
            })
            .collect();
        if !retried.is_empty() {
            let _ = writeln!(
                out,
                "\nRetried after a serialization failure (counted in the time above): {}.",
                retried.join("; ")
            );
        }
        if !self.diagnostics.is_empty() {
            let _ = writeln!(
                out,
                "\nWhat limits it (same run, fresh database):\n\n| diagnostic | rows/s | p50 / p99 ms |\n|---|---:|---:|"
            );
            for d in self.diagnostics {
                let (rate, lat) = match &d.result {
                    Ok(f) => (
                        thousands(f.per_second()),
                        format!("{:.2} / {:.2}", ms(f.p50), ms(f.p99)),
                    ),
                    Err(e) => (short_error(e), "–".to_owned()),
                };
                let _ = writeln!(out, "| {} | {rate} | {lat} |", d.label);
            }
        }
        out
    }

    /// The section between the `bench:store-append` markers.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "<!-- bench:store-append -->");
        let _ = writeln!(
            out,
            "## Event store append: ours beside postgres-es, esrs and disintegrate\n"
        );
        let _ = writeln!(
            out,
            "Measured {} by `scripts/bench.sh`, which rewrites everything between the \
             `bench:store-append` markers; the notes after the end marker are written by hand.\n",
            self.started.format("%Y-%m-%d %H:%M UTC")
        );
        let _ = writeln!(out, "### Machine\n\n{}", self.machine.markdown());
        let _ = writeln!(
            out,
            "### Command\n\n```sh\n\
             scripts/bench.sh         # release build, full run, rewrites this section\n\
             scripts/bench-smoke.sh   # seconds: every store and mode with tiny counts, nothing written (CI runs it)\n\
             ```\n\n\
             Both need PostgreSQL at `TEST_DATABASE_URL` (`scripts/services.sh` fills in \
             `postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable`: no TLS on \
             loopback). The peers' crates are only in the \
             `vulnledger-bench` crate (`benchmarks/`), which `scripts/test.sh` does not build.\n"
        );
        let _ = writeln!(
            out,
            "### What is measured\n\n\
             - Every store appends the same `FindingDetected` event ({} bytes of JSON; \
             ours and postgres-es also store {} bytes of metadata) through its own public API: \
             ours is `EventStore::append_alone`, one statement that is its own transaction, \
             then the readers' wake-up, as commands append (with the `txid` column); \
             postgres-es is \
             `PostgresEventRepository::persist` without snapshot, into the tables of its \
             `db/init.sql`; esrs is `PgStore::persist`; disintegrate is `PgEventStore::append` \
             with a query on the aggregate's id and the last event id it appended, so that each \
             store does its own optimistic-concurrency check.\n\
             - Each store has its own fresh database on the same server, created by its own \
             setup code, and a pool of {} connections opened before the clock starts.\n\
             - Each writer appends to its own aggregate, 100 events per aggregate, then moves \
             to a new one. A mode is 1 or 32 writers appending 1 or 100 events per transaction; \
             {}.\n\
             - Events/s = events appended in the timed part / wall time until the last writer \
             finished; latency is per append (one transaction). Each mode checks that the store \
             gained exactly the events its writers appended.\n\
             - Peers: {}.\n",
            self.fixture.payload_bytes,
            self.fixture.metadata_bytes,
            crate::POOL,
            self.plan.describe(),
            VERSIONS
        );
        let _ = writeln!(out, "### Figures\n\n{}", self.tables());
        let _ = writeln!(out, "<!-- /bench:store-append -->");
        out
    }
}
