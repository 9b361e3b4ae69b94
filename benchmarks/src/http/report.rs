//! The HTTP-commands table, printed and written between the `bench:http-commands`
//! markers of docs/benchmarks.md.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::{Figure, Plan, Results, Server, TARGET_P99, TARGET_RATE};
use crate::machine::Machine;
use crate::ms;
use crate::report::thousands;

pub struct Report<'a> {
    pub plan: &'a Plan,
    pub machine: &'a Machine,
    pub started: DateTime<Utc>,
    pub results: &'a Results,
}

impl Report<'_> {
    fn figure(&self, server: Server, rate: u32) -> Option<Result<&Figure, &str>> {
        let (_, result) = self.results.iter().find(|(s, _)| *s == server)?;
        match result {
            Ok(figures) => figures.iter().find(|f| f.rate == rate).map(Ok),
            Err(e) => Some(Err(e.as_str())),
        }
    }

    fn cell(&self, server: Server, rate: u32) -> String {
        match self.figure(server, rate) {
            Some(Ok(f)) => {
                let failed = if f.failed > 0 {
                    format!(
                        "; **{} of {} failed**",
                        thousands(f.failed as f64),
                        thousands(f.commands as f64)
                    )
                } else {
                    String::new()
                };
                format!(
                    "{}/s; {:.1} / {:.1} / {:.0}{failed}",
                    thousands(f.answered_per_second),
                    ms(f.p50),
                    ms(f.p99),
                    ms(f.max)
                )
            }
            Some(Err(e)) => format!(
                "failed: {}",
                e.replace('|', "/").chars().take(80).collect::<String>()
            ),
            None => "–".to_owned(),
        }
    }

    fn verdict(&self) -> String {
        match self.figure(Server::Vulnledger, TARGET_RATE) {
            Some(Ok(f)) if f.meets_target() => "**met**".to_owned(),
            Some(Ok(f)) => {
                let mut misses = Vec::new();
                if f.answered_per_second < f64::from(TARGET_RATE) * 0.98 {
                    misses.push(format!(
                        "answered {}/s, {:.0}% of the rate",
                        thousands(f.answered_per_second),
                        100.0 * f.answered_per_second / f64::from(TARGET_RATE)
                    ));
                }
                if f.p99 > TARGET_P99 {
                    misses.push(format!(
                        "p99 {:.0} ms, {:.1}× the target",
                        ms(f.p99),
                        ms(f.p99) / ms(TARGET_P99)
                    ));
                }
                if f.failed > 0 {
                    misses.push(format!("{} commands failed", thousands(f.failed as f64)));
                }
                format!("**missed**: {}", misses.join("; "))
            }
            _ => "not measured".to_owned(),
        }
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Answered per second; latency from when the command was due to its answer, \
             p50 / p99 / max in ms (lower is better):\n\n\
             | rate (open loop) | vulnledger | cqrs-es (postgres-es + axum) | vulnledger: answer → visible in the read model, p50 / p99 / max ms | diagnostic: vulnledger `serve --no-workers` (commands alone) |\n\
             |---:|---:|---:|---:|---:|"
        );
        for rate in &self.plan.rates {
            let lag = match self.figure(Server::Vulnledger, *rate) {
                Some(Ok(Figure { lag: Some(l), .. })) => format!(
                    "{:.1} / {:.1} / {:.0}{}",
                    ms(l.p50),
                    ms(l.p99),
                    ms(l.max),
                    if l.unseen > 0 {
                        format!(" ({} not seen)", l.unseen)
                    } else {
                        String::new()
                    }
                ),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {}/s | {} | {} | {lag} | {} |",
                thousands(f64::from(*rate)),
                self.cell(Server::Vulnledger, *rate),
                self.cell(Server::CqrsEs, *rate),
                self.cell(Server::VulnledgerNoWorkers, *rate),
            );
        }
        let _ = writeln!(
            out,
            "\nTarget (issue 7): {}/s with p99 ≤ {} ms: {}.",
            thousands(f64::from(TARGET_RATE)),
            ms(TARGET_P99),
            self.verdict()
        );
        let slips: Vec<String> = self
            .results
            .iter()
            .filter_map(|(s, r)| r.as_ref().ok().map(|f| (s, f)))
            .flat_map(|(s, figures)| {
                figures
                    .iter()
                    .map(move |f| format!("{} {}/s {:.1} ms", s.name(), f.rate, ms(f.slip_p99)))
            })
            .collect();
        let wal: Vec<String> = self
            .results
            .iter()
            .filter_map(|(s, r)| r.as_ref().ok().map(|f| (s, f)))
            .flat_map(|(s, figures)| {
                figures.iter().filter_map(move |f| {
                    f.wal_per_command
                        .map(|w| format!("{} {}/s {:.1} kB", s.name(), f.rate, w / 1024.0))
                })
            })
            .collect();
        let _ = writeln!(
            out,
            "WAL written per command, the whole server's, from before the rate until the \
             server settled (the command, its projection, everything else): {}.",
            wal.join(", ")
        );
        let _ = writeln!(
            out,
            "Time a command waited before it was sent, p99 (the generator's own lateness plus, \
             once the server falls behind, the queue for one of its {} connections; included \
             in the latencies above): {}.",
            super::IN_FLIGHT,
            slips.join(", ")
        );
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "<!-- bench:http-commands -->");
        let _ = writeln!(
            out,
            "## HTTP commands at fixed rates: vulnledger beside plain cqrs-es\n\n\
             Measured {} by `scripts/bench.sh` (`vulnledger-bench http`), which rewrites \
             everything between the `bench:http-commands` markers.\n",
            self.started.format("%Y-%m-%d %H:%M UTC")
        );
        let _ = writeln!(out, "### Machine\n\n{}", self.machine.markdown());
        let _ = writeln!(
            out,
            "### What is measured\n\n\
             - Open loop: command *i* is due at start + *i* / rate, whatever the answers' \
             latency, each on a finding of its own, OPEN → CONFIRMED; the first second is \
             warm-up, then {} s per rate. Latency counts from when the command was due, so \
             queueing (in the server or in the generator) is not hidden.\n\
             - Each server runs in a child process; the generator (reqwest, this process) \
             shares the machine's cores with it and with PostgreSQL.\n\
             - **vulnledger**: `vulnledger serve` with workers, `PATCH \
             /api/v1/findings/{{id}}/status` with a bearer token and If-Match, on a tenant \
             that `vulnledger::demo` loaded through the command path. Its answer carries \
             `X-Event-Position`; the last column is the time from that answer until the \
             `findings` projection announced a checkpoint covering it.\n\
             - **cqrs-es**: axum in front of `postgres_es::postgres_cqrs` over the same \
             `Finding` aggregate with one inline `GenericQuery` (`PostgresViewRepository`), \
             20 connections as ours, findings detected through the same framework. It does \
             less per command: no authentication, tenant, If-Match, idempotency or metadata. \
             Its view is written before the answer (so no lag column), and is lost for good \
             if the process dies between the events' commit and the view's write.\n\
             - **Diagnostic** (last column): the same vulnledger load on `serve --no-workers`, \
             after its projection caught up on the load: the command path alone, with no \
             projection working beside it on the same two cores.\n\
             - Before each rate a `CHECKPOINT` writes out what the load and the previous rate \
             left dirty, so that each rate pays for its own writes only.\n",
            self.plan.seconds
        );
        let _ = writeln!(out, "### Figures\n\n{}", self.table());
        let _ = writeln!(out, "<!-- /bench:http-commands -->");
        out
    }
}
