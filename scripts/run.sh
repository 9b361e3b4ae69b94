#!/usr/bin/env bash
# scripts/run.sh - start PostgreSQL + NATS if needed, then run the vulnledger
# server (`serve` applies the database migrations itself).
#
#   bash scripts/run.sh [--demo] [serve args...]
#
#   --demo   first run `vulnledger demo` (loads the demo tenant), then serve.
# Without --demo, when the database has no tenant yet, the demo is offered:
# on a terminal the script asks (answer y to load it; anything else, or no
# answer within 60 s, serves the empty database); without a terminal it
# prints a one-line hint and serves.
# Any other arguments are passed to `vulnledger serve`.
# Environment: see scripts/services.sh (DATABASE_URL, NATS_URL, ports...);
# the server itself also reads e.g. BIND_ADDR and JWT_SECRET
# (docs/operations.md lists them all).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh

vulnledger() {
  cargo run --release --bin vulnledger -- "$@"
}

# Prints "none" when the database has no tenant (or no schema yet), "some" when
# it has one, "unknown" when it cannot be checked (no psql, or the query failed).
tenants_in_database() {
  local psql answer
  if ! psql="$(_vl_pg_prog psql)"; then
    echo unknown
    return 0
  fi
  answer="$(PGCONNECT_TIMEOUT=5 "$psql" "$DATABASE_URL" -X -q -t -A -v ON_ERROR_STOP=1 \
    -c "SELECT to_regclass('public.tenants') IS NOT NULL" 2>/dev/null)" || answer=""
  case "$answer" in
    f) echo none; return 0 ;;
    t) ;;
    *) echo unknown; return 0 ;;
  esac
  answer="$(PGCONNECT_TIMEOUT=5 "$psql" "$DATABASE_URL" -X -q -t -A -v ON_ERROR_STOP=1 \
    -c "SELECT EXISTS (SELECT 1 FROM tenants)" 2>/dev/null)" || answer=""
  case "$answer" in
    f) echo none ;;
    t) echo some ;;
    *) echo unknown ;;
  esac
}

demo=no
if [[ "${1:-}" == "--demo" ]]; then
  shift
  demo=yes
elif [[ "$(tenants_in_database)" == none ]]; then
  if [[ -t 0 && -t 2 ]]; then
    answer=""
    read -r -t 60 -p "run: the database has no tenant yet. Load the demo tenant first (a few seconds)? [y/N] " answer \
      || echo >&2
    if [[ "$answer" == [yY]* ]]; then
      demo=yes
    fi
  else
    echo "run: the database has no tenant yet; 'scripts/run.sh --demo' loads a demo tenant (or see README.md, First steps)" >&2
  fi
fi

if [[ "$demo" == yes ]]; then
  echo "run: loading demo data (vulnledger demo); it prints the demo users' passwords" >&2
  vulnledger demo
fi

echo "run: starting vulnledger serve (DATABASE_URL=$DATABASE_URL NATS_URL=$NATS_URL)" >&2
exec cargo run --release --bin vulnledger -- serve "$@"
