#!/usr/bin/env bash
# scripts/bench.sh - the benchmark suite, full run, written into docs/benchmarks.md.
#
#   scripts/bench.sh [--seconds N] [PART...]
#
#   --seconds N  per store and mode of store-append (default 10)
#   PART...      only these parts, in this order (default: all of them, in the order
#                below): store-append http-commands import read-models audit-export rebuild
#
# 1. brings up PostgreSQL (scripts/services.sh) and exports TEST_DATABASE_URL;
# 2. builds the vulnledger-bench crate (benchmarks/) in release;
# 3. runs its parts, each store or server in a fresh database vulnledger_bench_<uuid>
#    that is dropped at the end:
#    - store-append: ours beside postgres-es, esrs and disintegrate, 1 and 32 writers,
#      1 and 100 events per transaction (about 4 minutes with the default 10 s per store
#      and mode; --seconds N changes that);
#    - http-commands: `vulnledger serve` beside cqrs-es behind axum, each in a child
#      process, PATCH status commands at 500, 1,000, 2,000 and 5,000/s open loop, with
#      vulnledger's projection lag (about 8 minutes);
#    - import: the same two servers, grype/many_vulns.json three times and a generated
#      100k-finding Grype report once, over HTTP (about 3 minutes);
#    - read-models: `cargo bench --bench read_models` at 1M findings: finding queries
#      and KPIs over HTTP with the OFFSET + count(*) pattern beside them, projection lag
#      at 200/s and 1,000/s in-process and through NATS (about 12 minutes);
#    - audit-export: a tenant of 1M events loaded by `vulnledger::demo`, exported by
#      `vulnledger audit export` as NDJSON and CSV beside PostgreSQL's COPY through
#      psql, with each child's peak memory (about 5 minutes);
#    - rebuild: 10M events loaded by `vulnledger::demo` in tenants of 1M findings, every
#      projection rebuilt, beside cqrs-es's QueryReplay on 100k of the same event (about
#      45 minutes on a 2-core machine: 19 loading, 16 rebuilding, 11 for the peer; `vulnledger-bench rebuild
#      --database NAME` rebuilds a store a previous run left without loading it again);
# 4. after each part, replaces its section between `<!-- bench:NAME -->` and
#    `<!-- /bench:NAME -->` in docs/benchmarks.md (appends it if missing) with the
#    machine, the command and the tables. Hand-written notes after an end marker are kept.
# A part that fails stops it with a non-zero exit, leaving that part's section and the
# later ones as they were (the sections of the parts before it are already written).
# scripts/bench-smoke.sh is the quick run that CI does.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh

doc=docs/benchmarks.md
sections="$(mktemp -d)"
trap 'rm -rf "$sections" "$doc.bench-tmp"' EXIT

# Replaces the part of $doc between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
# with FILE (which holds both markers), or appends FILE when the markers are missing.
splice() {
  local name="$1" file="$2"
  local begin="<!-- bench:$name -->" end="<!-- /bench:$name -->"
  if grep -qF "$begin" "$doc"; then
    awk -v file="$file" -v begin="$begin" -v end="$end" '
      $0 == begin { while ((getline line < file) > 0) print line; skip = 1; next }
      $0 == end && skip { skip = 0; next }
      !skip { print }
    ' "$doc" > "$doc.bench-tmp"
    mv "$doc.bench-tmp" "$doc"
  else
    { printf '\n'; cat "$file"; } >> "$doc"
  fi
  echo "bench: wrote the $name section of $doc"
}

seconds=()
parts=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=(--seconds "${2:?--seconds needs a number}"); shift 2 ;;
    store-append|http-commands|import|read-models|audit-export|rebuild) parts+=("$1"); shift ;;
    *) echo "bench: unknown argument $1 (parts: store-append http-commands import read-models audit-export rebuild)" >&2; exit 2 ;;
  esac
done
if [[ ${#parts[@]} -eq 0 ]]; then
  parts=(store-append http-commands import read-models audit-export rebuild)
fi

cargo build --release -p vulnledger-bench
bench() { cargo run --quiet --release -p vulnledger-bench -- "$@"; }

# Each part writes its section only when it succeeded as a whole.
for part in "${parts[@]}"; do
  out="$sections/$part.md"
  case "$part" in
    store-append) bench --markdown "$out" "${seconds[@]}" ;;
    http-commands) bench http --markdown "$out" ;;
    import) bench import --markdown "$out" ;;
    read-models) cargo bench --bench read_models -- --markdown "$out" ;;
    audit-export) bench audit --markdown "$out" ;;
    rebuild) bench rebuild --markdown "$out" ;;
  esac
  splice "$part" "$out"
done
