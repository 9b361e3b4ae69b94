#!/usr/bin/env bash
# scripts/bench.sh - the benchmark suite, full run, written into docs/benchmarks.md.
#
#   scripts/bench.sh [--seconds N]
#
# 1. brings up PostgreSQL (scripts/services.sh) and exports TEST_DATABASE_URL;
# 2. builds the vulnledger-bench crate (benchmarks/) in release;
# 3. runs it: event-store append of ours beside postgres-es, esrs and disintegrate,
#    1 and 32 writers, 1 and 100 events per transaction, each store in a fresh
#    database vulnledger_bench_<uuid> that is dropped at the end (about 4 minutes with
#    the default 10 s per store and mode);
# 4. replaces the section between `<!-- bench:store-append -->` and
#    `<!-- /bench:store-append -->` in docs/benchmarks.md (appends it if missing) with
#    the machine, the command and the tables. Hand-written notes after the end marker
#    are kept.
# A store or mode that fails makes it exit non-zero without touching the docs.
# scripts/bench-smoke.sh is the quick run that CI does.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh

doc=docs/benchmarks.md
section="$(mktemp)"
trap 'rm -f "$section" "$doc.bench-tmp"' EXIT

cargo build --release -p vulnledger-bench
cargo run --quiet --release -p vulnledger-bench -- --markdown "$section" "$@"

begin='<!-- bench:store-append -->'
end='<!-- /bench:store-append -->'
if grep -qF "$begin" "$doc"; then
  awk -v file="$section" -v begin="$begin" -v end="$end" '
    $0 == begin { while ((getline line < file) > 0) print line; skip = 1; next }
    $0 == end && skip { skip = 0; next }
    !skip { print }
  ' "$doc" > "$doc.bench-tmp"
  mv "$doc.bench-tmp" "$doc"
else
  { printf '\n'; cat "$section"; } >> "$doc"
fi
echo "bench: wrote the store-append section of $doc"
