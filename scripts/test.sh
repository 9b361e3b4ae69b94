#!/usr/bin/env bash
# scripts/test.sh - the project's full check, as CI runs it.
#
#   bash scripts/test.sh [extra cargo test args...]
#
# 1. brings up PostgreSQL + NATS (scripts/services.sh) and exports
#    DATABASE_URL, TEST_DATABASE_URL, NATS_URL;
# 2. drops leftover throwaway databases named vulnledger_test_* (best effort);
# 3. cargo fmt --all -- --check            (only when CI=true);
# 4. cargo test --workspace [--exclude vulnledger-bench] [args...];
# 5. scripts/bench-smoke.sh, if it exists and is executable (after green tests).
# Exits non-zero if any step failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh

declare -a SUMMARY=()
FAILED=0
note() { SUMMARY+=("$1"); }

# Run a step, record "name: ok|FAILED (Ns)" and keep going.
step() {
  local name="$1" start rc=0
  shift
  echo "==> $name: $*"
  start=$SECONDS
  "$@" || rc=$?
  if [[ $rc -eq 0 ]]; then
    note "$name: ok ($((SECONDS - start))s)"
  else
    note "$name: FAILED with exit code $rc ($((SECONDS - start))s)"
    FAILED=1
  fi
  return "$rc"
}

# --- 2. leftover test databases -------------------------------------------
# Only databases nobody is connected to (no FORCE), and, where the server lets
# us read file times, only ones older than 10 minutes, so a concurrent test run
# on the same server keeps its databases.
drop_leftover_test_dbs() {
  local psql dbs db n=0
  psql="$(_vl_pg_prog psql)" || { echo "test: psql not found, not dropping leftover test databases"; return 0; }
  local q_base="SELECT datname FROM pg_database d
    WHERE datname LIKE 'vulnledger\\_test\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"
  local q_age=" AND (pg_stat_file('base/' || d.oid || '/PG_VERSION')).modification < now() - interval '10 minutes'"
  dbs="$(PGCONNECT_TIMEOUT=5 "$psql" "$TEST_DATABASE_URL" -X -q -t -A -c "$q_base$q_age" 2>/dev/null)" \
    || dbs="$(PGCONNECT_TIMEOUT=5 "$psql" "$TEST_DATABASE_URL" -X -q -t -A -c "$q_base" 2>/dev/null)" \
    || { echo "test: could not list leftover test databases (ignored)"; return 0; }
  while IFS= read -r db; do
    [[ -n "$db" ]] || continue
    if printf '%s\n' 'DROP DATABASE IF EXISTS :"db";' \
        | PGCONNECT_TIMEOUT=5 "$psql" "$TEST_DATABASE_URL" -X -q -v db="$db" >/dev/null 2>&1; then
      n=$((n + 1))
    fi
  done <<< "$dbs"
  echo "test: dropped $n leftover test database(s)"
}
drop_leftover_test_dbs || true

# --- 3. formatting (CI only) ----------------------------------------------
if [[ "${CI:-}" == "true" ]]; then
  step fmt cargo fmt --all -- --check || true
else
  note "fmt: skipped (CI != true)"
fi

# --- 4. tests ---------------------------------------------------------------
# The benchmark crate (if any) must not be built by the normal test command.
test_args=(--workspace)
if cargo metadata --no-deps --format-version 1 2>/dev/null \
    | grep -q '"name":"vulnledger-bench","version"'; then
  test_args+=(--exclude vulnledger-bench)
fi
TESTS_OK=1
step tests cargo test "${test_args[@]}" "$@" || TESTS_OK=0

# --- 5. benchmark smoke -----------------------------------------------------
if [[ -x scripts/bench-smoke.sh ]]; then
  if [[ $TESTS_OK -eq 1 ]]; then
    step bench-smoke scripts/bench-smoke.sh || true
  else
    note "bench-smoke: skipped (tests failed)"
  fi
fi

echo
echo "==> summary"
printf '    %s\n' "${SUMMARY[@]}"
if [[ $FAILED -ne 0 ]]; then
  echo "==> FAILED"
  exit 1
fi
echo "==> all steps ok"
