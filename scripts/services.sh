#!/usr/bin/env bash
# scripts/services.sh - make sure PostgreSQL and NATS (JetStream) are reachable
# for vulnledger, and export the connection variables the app and tests use.
#
#   bash scripts/services.sh [up|status|stop]   # run it (default: up)
#   source scripts/services.sh                  # bring services up AND export vars
#
# For each service, in this order of preference:
#   a) already reachable at the configured host/port -> use it;
#   b) start it from local binaries with its data under .data/ (gitignored);
#   c) `docker compose up -d postgres nats` using compose.yaml.
# Running it again never starts a second server. `stop` stops only the servers
# that path (b) started (the ones under .data/); docker ones: `docker compose down`.
#
# Reads (all optional):
#   VULNLEDGER_PG_PORT        (5432)  VULNLEDGER_NATS_PORT (4222)
#   DATABASE_URL              (postgres://postgres@127.0.0.1:$VULNLEDGER_PG_PORT/vulnledger?sslmode=disable)
#   TEST_DATABASE_URL         (postgres://postgres@127.0.0.1:$VULNLEDGER_PG_PORT/postgres?sslmode=disable)
#   NATS_URL                  (nats://127.0.0.1:$VULNLEDGER_NATS_PORT)
#   VULNLEDGER_SERVICES_TIMEOUT  seconds to wait for readiness (60)
#   VULNLEDGER_PG_BINDIR      directory holding initdb/pg_ctl (auto-detected)
# The host/port actually probed are the ones in DATABASE_URL / NATS_URL.
# Exports DATABASE_URL, TEST_DATABASE_URL, NATS_URL (only filling in unset ones),
# VULNLEDGER_PG_PORT and VULNLEDGER_NATS_PORT.
#
# When sourced, the work runs in a subshell under `set -euo pipefail`, so a
# failure returns non-zero to the caller instead of killing an interactive
# shell, and the caller's shell options are left as they were.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
fi

# ---------------------------------------------------------------- config ----
VULNLEDGER_PG_PORT="${VULNLEDGER_PG_PORT:-5432}"
VULNLEDGER_NATS_PORT="${VULNLEDGER_NATS_PORT:-4222}"
# No TLS to a server on loopback: it protects nothing there and, on two cores, made
# commands several times slower (docs/scaling.md, "Settings for write-heavy triage").
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:${VULNLEDGER_PG_PORT}/vulnledger?sslmode=disable}"
TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:${VULNLEDGER_PG_PORT}/postgres?sslmode=disable}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:${VULNLEDGER_NATS_PORT}}"
export VULNLEDGER_PG_PORT VULNLEDGER_NATS_PORT DATABASE_URL TEST_DATABASE_URL NATS_URL

_VL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ------------------------------------------------------------- helpers ------
_vl_say() { printf 'services: %s\n' "$*" >&2; }
_vl_die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# _vl_parse_url URL DEFAULT_PORT -> sets _u_scheme _u_auth _u_user _u_host _u_port _u_path _u_query
_vl_parse_url() {
  local url="$1" def_port="$2" rest hostport
  _u_scheme="${url%%://*}"
  rest="${url#*://}"
  _u_query=""
  if [[ "$rest" == *\?* ]]; then _u_query="${rest#*\?}"; rest="${rest%%\?*}"; fi
  _u_auth="${rest%%/*}"
  if [[ "$rest" == */* ]]; then _u_path="${rest#*/}"; else _u_path=""; fi
  _u_user=""
  hostport="$_u_auth"
  if [[ "$_u_auth" == *@* ]]; then
    _u_user="${_u_auth%@*}"; _u_user="${_u_user%%:*}"
    hostport="${_u_auth##*@}"
  fi
  if [[ "$hostport" == \[* ]]; then            # [::1]:5432
    _u_host="${hostport%%]*}"; _u_host="${_u_host#[}"
    _u_port="${hostport#*]}"; _u_port="${_u_port#:}"
  elif [[ "$hostport" == *:* ]]; then
    _u_host="${hostport%%:*}"; _u_port="${hostport##*:}"
  else
    _u_host="$hostport"; _u_port=""
  fi
  [[ -n "$_u_host" ]] || _u_host="127.0.0.1"
  [[ -n "$_u_port" ]] || _u_port="$def_port"
}

_vl_is_local() {
  case "$1" in 127.*|localhost|::1) return 0 ;; *) return 1 ;; esac
}

# TCP connect probe (no external tools needed).
_vl_tcp_open() {
  # shellcheck disable=SC2016  # $1/$2 expand in the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# First line a NATS server sends on connect ("INFO {...}"), empty if none.
_vl_nats_info() {
  # shellcheck disable=SC2016  # $1/$2/$line expand in the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r -t 2 line <&3 && printf "%s\n" "$line"' \
    _ "$1" "$2" 2>/dev/null || true
}

# /usr/lib/postgresql/<major>/bin directories, newest major first.
_vl_pg_versioned_bindirs() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [[ -d "$d" ]] && printf '%s\n' "$d"
  done | sort -t/ -k5,5 -V -r
}

# Find a PostgreSQL client/server program: PATH, the chosen bindir, then
# /usr/lib/postgresql/*/bin (newest first).
_vl_pg_prog() {
  local name="$1" d
  if [[ -n "${_VL_PG_BINDIR:-}" && -x "$_VL_PG_BINDIR/$name" ]]; then
    printf '%s\n' "$_VL_PG_BINDIR/$name"; return 0
  fi
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  while IFS= read -r d; do
    if [[ -x "$d/$name" ]]; then printf '%s\n' "$d/$name"; return 0; fi
  done < <(_vl_pg_versioned_bindirs)
  return 1
}

# Choose the directory holding initdb + pg_ctl (same version for both). If the
# data dir already exists, prefer the binaries of its major version.
_vl_pg_bindir() {
  local pgdata="$1" ver="" d p
  if [[ -n "${VULNLEDGER_PG_BINDIR:-}" ]]; then
    [[ -x "$VULNLEDGER_PG_BINDIR/initdb" && -x "$VULNLEDGER_PG_BINDIR/pg_ctl" ]] || return 1
    printf '%s\n' "$VULNLEDGER_PG_BINDIR"; return 0
  fi
  [[ -f "$pgdata/PG_VERSION" ]] && ver="$(cat "$pgdata/PG_VERSION")"
  if [[ -n "$ver" && -x "/usr/lib/postgresql/$ver/bin/pg_ctl" && -x "/usr/lib/postgresql/$ver/bin/initdb" ]]; then
    printf '%s\n' "/usr/lib/postgresql/$ver/bin"; return 0
  fi
  if p="$(command -v initdb 2>/dev/null)"; then
    d="$(dirname "$(readlink -f "$p")")"
    if [[ -x "$d/pg_ctl" ]]; then printf '%s\n' "$d"; return 0; fi
  fi
  while IFS= read -r d; do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then printf '%s\n' "$d"; return 0; fi
  done < <(_vl_pg_versioned_bindirs)
  return 1
}

# Postgres state at host:port: 0 = accepting, 1 = up but not (yet) accepting,
# 2 = nothing there.
_vl_pg_state() {
  local host="$1" port="$2" isready rc
  if isready="$(_vl_pg_prog pg_isready)"; then
    rc=0; "$isready" -q -h "$host" -p "$port" -t 3 >/dev/null 2>&1 || rc=$?
    case "$rc" in 0) return 0 ;; 1) return 1 ;; *) return 2 ;; esac
  fi
  if _vl_tcp_open "$host" "$port"; then return 0; fi
  return 2
}

_vl_wait_pg() {
  local host="$1" port="$2" timeout="$3" i=0 st
  while :; do
    st=0; _vl_pg_state "$host" "$port" || st=$?
    [[ $st -eq 0 ]] && return 0
    (( i >= timeout )) && return 1
    sleep 1; i=$((i + 1))
  done
}

_vl_wait_nats() {
  local host="$1" port="$2" timeout="$3" i=0
  while :; do
    [[ "$(_vl_nats_info "$host" "$port")" == INFO* ]] && return 0
    (( i >= timeout )) && return 1
    sleep 1; i=$((i + 1))
  done
}

# Run a command as the unprivileged owner of the Postgres data dir when root.
_vl_as_pg() {
  if [[ "$(id -u)" -eq 0 ]]; then
    # from / : the checkout may not be readable by that user
    ( cd / && runuser -u "$_VL_PG_OSUSER" -- "$@" )
  else
    "$@"
  fi
}

_vl_docker_compose() {
  if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    # compose interpolates the whole file; the app service requires JWT_SECRET,
    # which starting only postgres/nats does not need.
    JWT_SECRET="${JWT_SECRET:-unused-by-services-sh}" docker compose -f "$_VL_ROOT/compose.yaml" "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    JWT_SECRET="${JWT_SECRET:-unused-by-services-sh}" docker-compose -f "$_VL_ROOT/compose.yaml" "$@"
  else
    return 127
  fi
}

_vl_have_docker() {
  { command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1 \
      && docker info >/dev/null 2>&1; } \
    || { command -v docker-compose >/dev/null 2>&1 && docker info >/dev/null 2>&1; }
}

# Paths of the project-local Postgres. As root the server runs as an
# unprivileged user, which must be able to reach the data dir; if the checkout
# is not traversable by that user (e.g. under /root), use a per-checkout
# directory in /tmp instead.
_vl_pg_paths() {
  _VL_DATA="$_VL_ROOT/.data"
  _VL_PGDATA="$_VL_DATA/pg"
  _VL_PGLOG="$_VL_DATA/pg.log"
  _VL_PG_OSUSER="$(id -un)"
  if [[ "$(id -u)" -eq 0 ]]; then
    if id -u postgres >/dev/null 2>&1; then
      _VL_PG_OSUSER=postgres
    else
      _VL_PG_OSUSER=vulnledger-pg
    fi
    if id -u "$_VL_PG_OSUSER" >/dev/null 2>&1 \
        && ! runuser -u "$_VL_PG_OSUSER" -- test -x "$_VL_ROOT" 2>/dev/null; then
      local alt
      alt="${TMPDIR:-/tmp}/vulnledger-pg-$(printf '%s' "$_VL_ROOT" | cksum | cut -d' ' -f1)"
      _VL_PGDATA="$alt/pg"
      _VL_PGLOG="$alt/pg.log"
    fi
  fi
}

_vl_nats_paths() {
  _VL_DATA="$_VL_ROOT/.data"
  _VL_NATS_DIR="$_VL_DATA/nats"
  _VL_NATS_PID="$_VL_DATA/nats.pid"
  _VL_NATS_LOG="$_VL_DATA/nats.log"
}

# pid of our local nats-server if it is running, else fail.
_vl_nats_local_pid() {
  local pid
  [[ -f "$_VL_NATS_PID" ]] || return 1
  pid="$(tr -dc '0-9' < "$_VL_NATS_PID")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/stat" ]]; then
    # not a zombie, and really a nats-server
    [[ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == nats-server* ]] || return 1
  fi
  printf '%s\n' "$pid"
}

# Client port our local nats-server was started with (from its command line).
_vl_nats_local_port() {
  local pid="$1" prev="" arg
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  while IFS= read -r -d '' arg; do
    if [[ "$prev" == -p || "$prev" == --port ]]; then printf '%s\n' "$arg"; return 0; fi
    prev="$arg"
  done < "/proc/$pid/cmdline"
  return 1
}

# ------------------------------------------------------------ postgres ------
_vl_pg_start_local() {
  local port="$1" bindir
  _vl_pg_paths
  bindir="$(_vl_pg_bindir "$_VL_PGDATA")" || return 1
  _VL_PG_BINDIR="$bindir"

  if [[ "$(id -u)" -eq 0 ]] && ! id -u "$_VL_PG_OSUSER" >/dev/null 2>&1; then
    _vl_say "creating system user $_VL_PG_OSUSER to run the local PostgreSQL (initdb refuses root)"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$_VL_PG_OSUSER" \
      || _vl_die "could not create user $_VL_PG_OSUSER"
  fi

  mkdir -p "$(dirname "$_VL_PGDATA")" "$_VL_PGDATA" && touch "$_VL_PGLOG" || return 1
  if [[ "$(id -u)" -eq 0 ]]; then
    chown "$_VL_PG_OSUSER" "$_VL_PGDATA" "$_VL_PGLOG" || return 1
  fi
  chmod 700 "$_VL_PGDATA" || return 1

  if [[ ! -f "$_VL_PGDATA/PG_VERSION" ]]; then
    _vl_say "postgres: initdb $_VL_PGDATA ($bindir)"
    _vl_as_pg "$bindir/initdb" -D "$_VL_PGDATA" -U postgres --auth=trust -E UTF8 --no-locale \
      >>"$_VL_PGLOG" 2>&1 || { tail -n 20 "$_VL_PGLOG" >&2; return 1; }
  fi

  if _vl_as_pg "$bindir/pg_ctl" -D "$_VL_PGDATA" status >/dev/null 2>&1; then
    # Running from our data dir but not answering on the configured port.
    _vl_die "a local PostgreSQL is already running from $_VL_PGDATA but not on port $port (port changed?); stop it with: bash scripts/services.sh stop"
  fi

  _vl_as_pg "$bindir/pg_ctl" -D "$_VL_PGDATA" -w -t "$_VL_TIMEOUT" \
    -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" -l "$_VL_PGLOG" start >/dev/null \
    || { _vl_say "pg_ctl start failed; last lines of $_VL_PGLOG:"; tail -n 20 "$_VL_PGLOG" >&2; return 1; }
}

_vl_ensure_pg() {
  local host port st=0
  _vl_parse_url "$DATABASE_URL" 5432
  host="$_u_host"; port="$_u_port"

  _vl_pg_state "$host" "$port" || st=$?
  if [[ $st -eq 0 ]]; then
    _vl_say "postgres $host:$port: already running (reachable) - using it"
    return 0
  fi
  if [[ $st -eq 1 ]]; then
    _vl_wait_pg "$host" "$port" "$_VL_TIMEOUT" \
      || _vl_die "postgres at $host:$port answers but does not accept connections after ${_VL_TIMEOUT}s"
    _vl_say "postgres $host:$port: already running (became ready) - using it"
    return 0
  fi

  _vl_is_local "$host" \
    || _vl_die "postgres at $host:$port (from DATABASE_URL) is not reachable, and it is not a local address I could start a server on"

  local why="no usable initdb/pg_ctl (PATH, /usr/lib/postgresql/*/bin)"
  if _vl_pg_bindir "$_VL_ROOT/.data/pg" >/dev/null; then
    why="starting it from local binaries failed (see above)"
    if _vl_pg_start_local "$port" && _vl_wait_pg "$host" "$port" "$_VL_TIMEOUT"; then
      _vl_say "postgres $host:$port: started local server (data $_VL_PGDATA, log $_VL_PGLOG, binaries $_VL_PG_BINDIR)"
      return 0
    fi
    _vl_say "postgres: starting from local binaries failed"
  fi

  if _vl_have_docker; then
    _vl_say "postgres: trying docker compose (compose.yaml)"
    VULNLEDGER_PG_PORT="$port" _vl_docker_compose up -d postgres \
      || _vl_die "docker compose up -d postgres failed"
    _vl_wait_pg "$host" "$port" "$_VL_TIMEOUT" \
      || _vl_die "postgres container did not become ready on $host:$port within ${_VL_TIMEOUT}s (docker compose logs postgres)"
    _vl_say "postgres $host:$port: started with docker compose"
    return 0
  fi

  _vl_die "postgres is not reachable at $host:$port, $why, and docker compose is not usable. Install PostgreSQL (e.g. apt-get install postgresql) or Docker, or point DATABASE_URL at a running server."
}

# Create the database named in DATABASE_URL if it does not exist.
_vl_ensure_db() {
  local psql db maint exists
  _vl_parse_url "$DATABASE_URL" 5432
  db="$_u_path"
  if [[ -z "$db" || "$db" == postgres ]]; then return 0; fi
  if ! psql="$(_vl_pg_prog psql)"; then
    _vl_say "database $db: psql not found, not checked (the app's migrate will report a missing database)"
    return 0
  fi
  maint="$_u_scheme://$_u_auth/postgres${_u_query:+?$_u_query}"
  exists="$(printf '%s\n' "SELECT 1 FROM pg_database WHERE datname = :'db';" \
    | PGCONNECT_TIMEOUT=5 "$psql" "$maint" -X -q -t -A -v ON_ERROR_STOP=1 -v db="$db")" \
    || _vl_die "could not query databases on $_u_host:$_u_port with psql"
  if [[ "$exists" == 1 ]]; then
    _vl_say "database $db: exists"
    return 0
  fi
  if printf '%s\n' "CREATE DATABASE :\"db\";" \
      | PGCONNECT_TIMEOUT=5 "$psql" "$maint" -X -q -v ON_ERROR_STOP=1 -v db="$db" >/dev/null; then
    _vl_say "database $db: created"
  else
    # Lost a race with a concurrent creator? Then it exists now.
    exists="$(printf '%s\n' "SELECT 1 FROM pg_database WHERE datname = :'db';" \
      | PGCONNECT_TIMEOUT=5 "$psql" "$maint" -X -q -t -A -v db="$db" 2>/dev/null || true)"
    [[ "$exists" == 1 ]] || _vl_die "could not create database $db"
    _vl_say "database $db: exists"
  fi
}

# ---------------------------------------------------------------- nats ------
_vl_nats_start_local() {
  local port="$1" bin pid
  _vl_nats_paths
  if pid="$(_vl_nats_local_pid)"; then
    local running_port i=0
    running_port="$(_vl_nats_local_port "$pid" || echo "$port")"
    if [[ "$running_port" != "$port" ]]; then
      _vl_die "a local nats-server (pid $pid, $_VL_NATS_PID) is running on port $running_port, not $port (port changed?); stop it with: bash scripts/services.sh stop"
    fi
    # Ours, on this port, not answering yet: it is starting (or dying).
    while _vl_nats_local_pid >/dev/null; do
      if [[ "$(_vl_nats_info 127.0.0.1 "$port")" == INFO* ]]; then
        return 0
      fi
      (( i >= _VL_TIMEOUT )) && _vl_die "the local nats-server (pid $pid) does not answer on port $port; see $_VL_NATS_LOG"
      sleep 1; i=$((i + 1))
    done
  fi
  bin="$(command -v nats-server 2>/dev/null)" || bin=""
  [[ -n "$bin" ]] || for bin in /usr/sbin/nats-server /usr/local/bin/nats-server "${HOME:-/nonexistent}/go/bin/nats-server" ""; do
    [[ -x "$bin" ]] && break
  done
  [[ -n "$bin" ]] || return 1
  mkdir -p "$_VL_NATS_DIR" || return 1
  rm -f "$_VL_NATS_PID"
  # setsid + nohup: the server outlives this script and its process group.
  # Early errors (before -l takes effect) land in the same log.
  # shellcheck disable=SC2094
  setsid nohup "$bin" -a 127.0.0.1 -p "$port" -js -sd "$_VL_NATS_DIR" \
    -P "$_VL_NATS_PID" -l "$_VL_NATS_LOG" </dev/null >>"$_VL_NATS_LOG" 2>&1 &
  if ! _vl_wait_nats 127.0.0.1 "$port" "$_VL_TIMEOUT"; then
    _vl_say "nats-server did not come up; last lines of $_VL_NATS_LOG:"
    tail -n 20 "$_VL_NATS_LOG" >&2 || true
    return 1
  fi
}

_vl_have_nats_bin() {
  command -v nats-server >/dev/null 2>&1 || [[ -x /usr/sbin/nats-server || -x /usr/local/bin/nats-server || -x "${HOME:-/nonexistent}/go/bin/nats-server" ]]
}

_vl_ensure_nats() {
  local host port info
  _vl_parse_url "$NATS_URL" 4222
  host="$_u_host"; port="$_u_port"

  if _vl_tcp_open "$host" "$port"; then
    info="$(_vl_nats_info "$host" "$port")"
    if [[ -n "$info" && "$info" != INFO* ]]; then
      _vl_die "something is listening on $host:$port but it does not speak the NATS protocol"
    fi
    _vl_say "nats $host:$port: already running (reachable) - using it"
    if [[ "$info" == INFO* && "$info" != *'"jetstream":true'* ]]; then
      _vl_say "WARNING: the NATS server at $host:$port does not advertise JetStream (start it with -js)"
    fi
    return 0
  fi

  _vl_is_local "$host" \
    || _vl_die "nats at $host:$port (from NATS_URL) is not reachable, and it is not a local address I could start a server on"

  local why="no nats-server binary"
  if _vl_have_nats_bin; then
    why="starting the local nats-server failed (see above)"
    if _vl_nats_start_local "$port"; then
      _vl_say "nats $host:$port: started local server (JetStream store $_VL_NATS_DIR, log $_VL_NATS_LOG, pid file $_VL_NATS_PID)"
      return 0
    fi
    _vl_say "nats: starting from local binary failed"
  fi

  if _vl_have_docker; then
    _vl_say "nats: trying docker compose (compose.yaml)"
    VULNLEDGER_NATS_PORT="$port" _vl_docker_compose up -d nats \
      || _vl_die "docker compose up -d nats failed"
    _vl_wait_nats "$host" "$port" "$_VL_TIMEOUT" \
      || _vl_die "nats container did not become ready on $host:$port within ${_VL_TIMEOUT}s (docker compose logs nats)"
    _vl_say "nats $host:$port: started with docker compose"
    return 0
  fi

  _vl_die "nats is not reachable at $host:$port, $why, and docker compose is not usable. Install nats-server (e.g. apt-get install nats-server) or Docker, or point NATS_URL at a running server."
}

# ------------------------------------------------------------ commands ------
_vl_services_up() (
  set -euo pipefail
  _VL_TIMEOUT="${VULNLEDGER_SERVICES_TIMEOUT:-60}"
  _vl_ensure_pg
  _vl_ensure_db
  _vl_ensure_nats
)

_vl_services_status() (
  set -euo pipefail
  local st=0 rc=0
  _vl_parse_url "$DATABASE_URL" 5432
  _vl_pg_state "$_u_host" "$_u_port" || st=$?
  if [[ $st -eq 0 ]]; then _vl_say "postgres $_u_host:$_u_port: reachable"; else _vl_say "postgres $_u_host:$_u_port: NOT reachable"; rc=1; fi
  _vl_parse_url "$NATS_URL" 4222
  if _vl_tcp_open "$_u_host" "$_u_port"; then _vl_say "nats $_u_host:$_u_port: reachable"; else _vl_say "nats $_u_host:$_u_port: NOT reachable"; rc=1; fi
  printf 'DATABASE_URL=%s\nTEST_DATABASE_URL=%s\nNATS_URL=%s\n' "$DATABASE_URL" "$TEST_DATABASE_URL" "$NATS_URL"
  return "$rc"
)

# Stop only the servers that path (b) started for this checkout.
_vl_services_stop() (
  set -euo pipefail
  local bindir pid i
  _vl_pg_paths
  if [[ -f "$_VL_PGDATA/PG_VERSION" ]] && bindir="$(_vl_pg_bindir "$_VL_PGDATA")" \
      && _vl_as_pg "$bindir/pg_ctl" -D "$_VL_PGDATA" status >/dev/null 2>&1; then
    _vl_as_pg "$bindir/pg_ctl" -D "$_VL_PGDATA" -m fast -w stop >/dev/null
    _vl_say "postgres: stopped local server ($_VL_PGDATA)"
  else
    _vl_say "postgres: no local server running from $_VL_PGDATA"
  fi
  _vl_nats_paths
  if pid="$(_vl_nats_local_pid)"; then
    kill "$pid"
    for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -f "$_VL_NATS_PID"
    _vl_say "nats: stopped local server (pid $pid)"
  else
    _vl_say "nats: no local server running from $_VL_NATS_DIR"
  fi
)

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  case "${1:-up}" in
    up|start) _vl_services_up ;;
    status)   _vl_services_status ;;
    stop)     _vl_services_stop ;;
    -h|--help|help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) _vl_die "unknown command '$1' (use: up, status, stop)" ;;
  esac
else
  # Sourced: the caller's positional parameters are not ours; always bring up.
  _vl_services_up
fi
