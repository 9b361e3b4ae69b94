#!/usr/bin/env bash
# scripts/bench-smoke.sh - the benchmark suite in smoke mode, so it never rots.
#
#   scripts/bench-smoke.sh
#
# Builds the vulnledger-bench crate (benchmarks/, debug profile: the figures of a smoke
# run mean nothing, and the debug build reuses what `cargo test` built) and runs
# `vulnledger-bench --smoke`: every store (ours, postgres-es, esrs, disintegrate) in every
# mode (1 and 32 writers, 1 and 100 events per transaction) with a few appends each,
# checking that every store gained exactly the events appended; then
# `vulnledger-bench http --smoke`: vulnledger and cqrs-es servers in child processes,
# 100 commands/s for a second each; `import --smoke`; `rebuild --smoke`;
# `audit --smoke`; and the
# read-model bench's smoke
# run (`benches/read_models.rs`, 20,000 findings). About two minutes once built.
# Writes nothing outside its scratch databases (which it drops). scripts/test.sh runs it
# after green tests; the full run is scripts/bench.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh

cargo run --quiet -p vulnledger-bench -- --smoke "$@"
# HTTP commands: both servers in child processes, 100/s for a second each.
cargo run --quiet -p vulnledger-bench -- http --smoke
# Report import over HTTP, both servers: many_vulns.json and a 2,000-finding report.
cargo run --quiet -p vulnledger-bench -- import --smoke
# Rebuild at 20,000 events beside cqrs-es's QueryReplay at 2,000.
cargo run --quiet -p vulnledger-bench -- rebuild --smoke
# Audit export of 20,000 events, NDJSON and CSV, beside COPY through psql.
cargo run --quiet -p vulnledger-bench -- audit --smoke
# Queries, KPIs and lag at 20,000 findings (debug build of the bench target, which
# `cargo test` runs as a plain binary: it has no test harness).
cargo test --quiet -p vulnledger --bench read_models -- --smoke
