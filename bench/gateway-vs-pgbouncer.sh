#!/usr/bin/env bash
# Measures the jitgate gateway against direct PostgreSQL and pgbouncer (session mode) with
# bench/proxy_overhead.sh, all in one run: jitgate with durable statement auditing, and jitgate
# with asynchronous auditing. Needs: PostgreSQL at 127.0.0.1:5432 (user postgres, trust),
# pgbench, pgbouncer (Debian package), and a release build (cargo build --release).
# Usage: bench/gateway-vs-pgbouncer.sh   (env: DURATION, REPS, WORKLOADS as proxy_overhead.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d /tmp/jitgate-gw-bench.XXXXXX)
chmod 755 "$WORK"
DB=jg_gwbench
BIN=$ROOT/target/release/jitgate
[[ -x $BIN ]] || cargo build --release -q
PSQL=(psql -X -q -h 127.0.0.1 -U postgres)
if ! command -v pgbouncer >/dev/null 2>&1; then
  echo "installing pgbouncer (Debian package)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi

cleanup() {
  for p in pgbouncer pgbouncer_noreuse; do
    [[ -f $WORK/$p.pid ]] && kill "$(cat "$WORK/$p.pid")" 2>/dev/null || true
  done
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  # The servers were killed with their grants active: drop the logins they created, then the roles.
  for r in $("${PSQL[@]}" -d postgres -Atc "SELECT rolname FROM pg_roles WHERE rolname LIKE 'jgb1809%'" 2>/dev/null); do
    "${PSQL[@]}" -d postgres -c "DROP ROLE IF EXISTS \"$r\"" >/dev/null 2>&1 || true
  done
  for r in bench gwb_reader; do "${PSQL[@]}" -d postgres -c "DROP ROLE IF EXISTS $r" >/dev/null 2>&1 || true; done
}
PIDS=()
trap cleanup EXIT

echo "setting up $DB (pgbench scale ${INIT_SCALE:-10})" >&2
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
"${PSQL[@]}" -d postgres -c "DROP ROLE IF EXISTS bench" -c "CREATE ROLE bench LOGIN PASSWORD 'bench'" >/dev/null
pgbench -q -i -s "${INIT_SCALE:-10}" -h 127.0.0.1 -U postgres "$DB" >/dev/null 2>&1
"${PSQL[@]}" -d "$DB" -c "GRANT ALL ON ALL TABLES IN SCHEMA public TO bench" \
  -c "DROP ROLE IF EXISTS gwb_reader" -c "CREATE ROLE gwb_reader" \
  -c "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO gwb_reader" >/dev/null

# pgbouncer, session mode, the reference proxy; it audits nothing. A second one with
# server_lifetime = 0 uses each server connection once: the baseline for the gateway's
# connection-per-transaction target, which opens a new upstream connection for every client.
start_pgbouncer() { # name port extra-setting
  cat >"$WORK/$1.ini" <<INI
[databases]
$DB = host=127.0.0.1 port=5432 dbname=$DB
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $2
auth_type = trust
auth_file = $WORK/users.txt
pool_mode = session
max_client_conn = 500
default_pool_size = 40
logfile = $WORK/$1.log
pidfile = $WORK/$1.pid
$3
INI
  chown -R postgres "$WORK"
  su postgres -s /bin/sh -c "pgbouncer -d $WORK/$1.ini"
}
echo '"bench" "bench"' >"$WORK/users.txt"
start_pgbouncer pgbouncer 6433 ""
start_pgbouncer pgbouncer_noreuse 6434 "server_lifetime = 0"

# Two jitgate servers on one config each: durable and async statement auditing.
TOKEN=jg_benchtokenbenchtokenbenchtoken
DIGEST=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
start_jitgate() { # name http-port gateway-port audit
  mkdir -p "$WORK/$1"
  cat >"$WORK/$1/jitgate.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
data_dir = "data"
[gateway.postgres]
listen = "127.0.0.1:$3"
audit = "$4"
[[principals]]
name = "alice"
kind = "service"
token_sha256 = "$DIGEST"
[[resources]]
name = "bench-db"
kind = "postgres"
admin_url = "postgres://postgres@127.0.0.1:5432/$DB"
role_prefix = "jgb$2_"
[resources.roles.bench]
grants = ["gwb_reader"]
[[policies]]
name = "bench"
principals = ["service:alice"]
resources = ["bench-db"]
roles = ["bench"]
max_duration = "2h"
[policies.approval]
required = 0
TOML
  JITGATE_LOG=warn "$BIN" serve --config "$WORK/$1/jitgate.toml" 2>"$WORK/$1/log" &
  PIDS+=($!)
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"resource":"bench-db","role":"bench","duration":"2h"}' "http://127.0.0.1:$2/api/v1/requests" >/dev/null
}
start_jitgate durable 18090 7432 durable
JG_PID=${PIDS[-1]}
start_jitgate async 18091 7433 async
JGA_PID=${PIDS[-1]}

MAX_SECONDS=${MAX_SECONDS:-1200} SSLMODE=disable "$ROOT/bench/proxy_overhead.sh" \
  --direct "host=127.0.0.1 port=5432 user=bench password=bench dbname=$DB" \
  --proxy pgbouncer="host=127.0.0.1 port=6433 user=bench password=bench dbname=$DB" \
  --proxy jitgate="host=127.0.0.1 port=7432 user=alice password=$TOKEN dbname=bench-db" \
  --proxy jitgate_async="host=127.0.0.1 port=7433 user=alice password=$TOKEN dbname=bench-db" \
  --proxy pgbouncer_noreuse="host=127.0.0.1 port=6434 user=bench password=bench dbname=$DB" \
  --proxy-pid pgbouncer="$(cat "$WORK/pgbouncer.pid")" --proxy-pid jitgate="$JG_PID" --proxy-pid jitgate_async="$JGA_PID" \
  --proxy-pid pgbouncer_noreuse="$(cat "$WORK/pgbouncer_noreuse.pid")"
