#!/usr/bin/env bash
# scripts/check-docs-ui.sh - render the Swagger UI at /api/docs in a real headless
# Chromium and check that it shows the API's operations, loaded from this server
# only (no CDN: the machines have no internet).
#
#   bash scripts/check-docs-ui.sh
#
# 1. installs Debian's chromium if /usr/bin/chromium is missing (needs root/apt);
# 2. brings up PostgreSQL (scripts/services.sh) and creates a throwaway database
#    vulnledger_docs_<random>, dropped again on exit;
# 3. builds and starts `cargo run -- serve` on a free port, waits for /health;
# 4. chromium --dump-dom: the DOM must hold rendered operations (`opblock`) and
#    the text /api/v1/auth/login, and no script/stylesheet from another host;
# 5. chromium --screenshot to $DOCS_SCREENSHOT (default /tmp/vulnledger-docs.png).
# Exits non-zero with a message on the first failed check. Cleans up (server,
# database, Chromium profiles) on any exit.
# Environment (all optional): DOCS_SCREENSHOT (PNG path), DOCS_KEEP_DOM (copy the
# dumped DOM there), DOCS_PATH (page to render, /api/docs/), DOCS_WAIT_SECS (120),
# CHROMIUM (/usr/bin/chromium).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCREENSHOT="${DOCS_SCREENSHOT:-/tmp/vulnledger-docs.png}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
WAIT_SECS="${DOCS_WAIT_SECS:-120}"
# The page to render (only changed to see the checks fail).
DOCS_PATH="${DOCS_PATH:-/api/docs/}"

say() { printf 'check-docs-ui: %s\n' "$*" >&2; }
fail() {
  printf 'check-docs-ui: FAILED: %s\n' "$*" >&2
  exit 1
}

# ------------------------------------------------------------ chromium ------
if [[ ! -x "$CHROMIUM" ]]; then
  [[ "$(id -u)" -eq 0 ]] || fail "$CHROMIUM is missing; install it with: sudo apt-get install -y chromium"
  say "installing Debian's chromium package"
  apt-get update -qq >&2 || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 \
    || fail "apt-get install chromium failed"
  [[ -x "$CHROMIUM" ]] || fail "chromium installed but $CHROMIUM is not there"
fi

# ------------------------------------------------------------ services ------
# shellcheck source=scripts/services.sh
source scripts/services.sh || fail "scripts/services.sh could not bring up PostgreSQL"

PSQL="$(command -v psql 2>/dev/null || _vl_pg_prog psql 2>/dev/null || true)"
[[ -n "$PSQL" ]] || fail "psql not found (apt-get install postgresql-client)"

DB_NAME="vulnledger_docs_$(tr -dc 'a-z0-9' </dev/urandom | head -c 12 || true)"
# TEST_DATABASE_URL with its database name replaced (query string kept).
db_url_for() {
  local url="$1" db="$2" base query="" scheme rest
  if [[ "$url" == *\?* ]]; then query="?${url#*\?}"; url="${url%%\?*}"; fi
  scheme="${url%%://*}"
  rest="${url#*://}"
  if [[ "$rest" == */* ]]; then base="$scheme://${rest%%/*}"; else base="$scheme://$rest"; fi
  printf '%s/%s%s' "$base" "$db" "$query"
}
DB_URL="$(db_url_for "$TEST_DATABASE_URL" "$DB_NAME")"

WORK="$(mktemp -d -t vulnledger-docs.XXXXXX)"
SERVER_PID=""
DB_CREATED=0

cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    # The server was started with setsid: its process group is its own pid.
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $DB_CREATED -eq 1 ]]; then
    PGCONNECT_TIMEOUT=5 "$PSQL" "$TEST_DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -v db="$DB_NAME" \
      >/dev/null 2>&1 <<<'DROP DATABASE IF EXISTS :"db" WITH (FORCE);' \
      || say "warning: could not drop database $DB_NAME"
  fi
  if [[ $rc -ne 0 && -f "$WORK/server.log" ]]; then
    say "last lines of the server log:"
    tail -n 30 "$WORK/server.log" >&2 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PGCONNECT_TIMEOUT=5 "$PSQL" "$TEST_DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -v db="$DB_NAME" \
  >/dev/null <<<'CREATE DATABASE :"db";' || fail "could not create database $DB_NAME"
DB_CREATED=1
say "database $DB_NAME created"

# ------------------------------------------------------------- server ------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=""
for _ in $(seq 1 50); do
  candidate=$((20000 + RANDOM % 40000))
  if ! port_in_use "$candidate"; then
    PORT="$candidate"
    break
  fi
done
[[ -n "$PORT" ]] || fail "no free port found"
BASE="http://127.0.0.1:$PORT"

say "building vulnledger"
cargo build --quiet --bin vulnledger >&2 || fail "cargo build failed"

say "starting cargo run -- serve on $BASE"
JWT_SECRET="$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 48 || true)"
DATABASE_URL="$DB_URL" BIND_ADDR="127.0.0.1:$PORT" JWT_SECRET="$JWT_SECRET" \
  RUST_LOG="${RUST_LOG:-warn}" \
  setsid cargo run --quiet --bin vulnledger -- serve >"$WORK/server.log" 2>&1 </dev/null &
SERVER_PID=$!

# GET a path; prints the status code (000 when nothing answers).
http_status() {
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -m 5 -w '%{http_code}' "$BASE$1" || true
  else
    # shellcheck disable=SC2016
    timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
      printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
      IFS=" " read -r _ code _ <&3 && printf "%s" "$code"' _ "$PORT" "$1" 2>/dev/null || printf '000'
  fi
}

started=$SECONDS
until [[ "$(http_status /health)" == 200 ]]; do
  kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited before answering /health"
  ((SECONDS - started < WAIT_SECS)) || fail "no 200 from $BASE/health within ${WAIT_SECS}s"
  sleep 0.5
done
say "server is up ($((SECONDS - started))s)"

[[ "$(http_status /api/openapi.json)" == 200 ]] || fail "/api/openapi.json does not answer 200"

# ------------------------------------------------------------- chromium ----
chromium_run() {
  local profile
  profile="$(mktemp -d "$WORK/profile.XXXXXX")"
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update \
    --disable-sync --disable-dev-shm-usage --user-data-dir="$profile" \
    --virtual-time-budget=15000 "$@"
}

say "rendering $BASE$DOCS_PATH (dump-dom)"
chromium_run --log-net-log="$WORK/net.json" --dump-dom "$BASE$DOCS_PATH" \
  >"$WORK/dom.html" 2>"$WORK/chromium.log" \
  || { tail -n 20 "$WORK/chromium.log" >&2; fail "chromium --dump-dom failed"; }

DOM="$WORK/dom.html"; [[ -n "${DOCS_KEEP_DOM:-}" ]] && cp "$DOM" "$DOCS_KEEP_DOM"
[[ -s "$DOM" ]] || fail "chromium dumped an empty DOM"
OPBLOCKS="$(grep -o 'class="opblock opblock-' "$DOM" | wc -l | tr -d ' ' || true)"
[[ "$OPBLOCKS" -gt 0 ]] \
  || fail "no rendered operations (no .opblock elements) in the DOM of $DOCS_PATH; is the UI blank or erroring?"
grep -q '/api/v1/auth/login' "$DOM" \
  || fail "the rendered docs do not show /api/v1/auth/login"
if grep -qi 'Failed to load API definition\|Fetch error' "$DOM"; then
  fail "the UI shows a load error for the API definition"
fi
# Any script, stylesheet, image or frame from another host means a CDN (and no
# internet here, so a broken page elsewhere).
EXTERNAL="$(grep -oiE '(src|href)="(https?:)?//[^"]+' "$DOM" \
  | grep -viE '"(https?:)?//(127\.0\.0\.1|localhost)(:[0-9]+)?/' || true)"
EXTERNAL_LOADS="$(printf '%s\n' "$EXTERNAL" | grep -iE '\.(js|css|png|svg|woff2?)(\?|$)|src=' || true)"
if [[ -n "$EXTERNAL_LOADS" ]]; then
  printf '%s\n' "$EXTERNAL_LOADS" >&2
  fail "the docs page loads assets from another host (a CDN?)"
fi
# Every request the browser attempted, from its network log. Chromium itself
# calls a few Google hosts (updates, time, accounts) whatever the page does;
# anything else that is not this server came from the page: a CDN.
BROWSER_OWN='^(clients[0-9]*\.google\.com|update\.googleapis\.com|accounts\.google\.com|[a-z0-9.-]*\.gvt1\.com|safebrowsing[a-z0-9.-]*\.googleapis\.com|optimizationguide-pa\.googleapis\.com|content-autofill\.googleapis\.com)$'
if [[ -s "$WORK/net.json" ]]; then
  FOREIGN="$(grep -oE '"url":"(https?|wss?)://[^/":]+' "$WORK/net.json" | sed -E 's#.*://##' \
    | sort -u | grep -vE '^(127\.0\.0\.1|localhost)$' | grep -vE "$BROWSER_OWN" || true)"
  if [[ -n "$FOREIGN" ]]; then
    printf '%s\n' "$FOREIGN" | sed 's/^/  /' >&2
    fail "the docs page tried to load from other hosts (a CDN?): $(printf '%s' "$FOREIGN" | tr '\n' ' ')"
  fi
else
  say "warning: chromium wrote no network log; only the DOM was checked for external assets"
fi
say "DOM ok: $OPBLOCKS operations rendered, /api/v1/auth/login shown, nothing loaded from elsewhere"

say "taking a screenshot to $SCREENSHOT"
rm -f "$SCREENSHOT"
(cd "$WORK" && chromium_run --hide-scrollbars --window-size=1280,1800 \
  --screenshot="$SCREENSHOT" "$BASE$DOCS_PATH" >"$WORK/screenshot.log" 2>&1) \
  || { tail -n 20 "$WORK/screenshot.log" >&2; fail "chromium --screenshot failed"; }
[[ -s "$SCREENSHOT" ]] || fail "no screenshot written to $SCREENSHOT"
SIZE="$(wc -c <"$SCREENSHOT" | tr -d ' ')"
# A blank white 1280x1800 PNG is a few KiB; the rendered UI is far larger.
[[ "$SIZE" -gt 20000 ]] || fail "the screenshot is suspiciously small ($SIZE bytes): blank page?"
say "screenshot ok ($SIZE bytes)"
say "ok"
