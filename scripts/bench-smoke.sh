#!/usr/bin/env bash
# scripts/bench-smoke.sh - the benchmark suite in smoke mode, so it never rots.
#
#   scripts/bench-smoke.sh
#
# Builds the vulnledger-bench crate (benchmarks/, debug profile: the figures of a smoke
# run mean nothing, and the debug build reuses what `cargo test` built) and runs
# `vulnledger-bench --smoke`: every store (ours, postgres-es, esrs, disintegrate) in every
# mode (1 and 32 writers, 1 and 100 events per transaction) with a few appends each,
# checking that every store gained exactly the events appended. Seconds once built.
# Writes nothing outside its scratch databases (which it drops). scripts/test.sh runs it
# after green tests; the full run is scripts/bench.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh

exec cargo run --quiet -p vulnledger-bench -- --smoke "$@"
