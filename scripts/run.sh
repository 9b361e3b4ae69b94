#!/usr/bin/env bash
# scripts/run.sh - start PostgreSQL + NATS if needed, then run the vulnledger
# server (`serve` applies the database migrations itself).
#
#   bash scripts/run.sh [--demo] [serve args...]
#
#   --demo   first run `vulnledger demo` (loads demo data), then serve.
# Any other arguments are passed to `vulnledger serve`.
# Environment: see scripts/services.sh (DATABASE_URL, NATS_URL, ports...);
# the server itself also reads e.g. BIND_ADDR and JWT_SECRET.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh

if [[ "${1:-}" == "--demo" ]]; then
  shift
  echo "run: loading demo data (vulnledger demo)" >&2
  cargo run --release --bin vulnledger -- demo
fi

echo "run: starting vulnledger serve (DATABASE_URL=$DATABASE_URL NATS_URL=$NATS_URL)" >&2
exec cargo run --release --bin vulnledger -- serve "$@"
