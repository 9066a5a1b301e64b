#!/usr/bin/env bash
# Provide the PostgreSQL the tests and the bench write into: Debian's `postgresql` binaries, a PRIVATE
# cluster (its own data directory, not Debian's default cluster) on 127.0.0.1:54329 only, started
# without systemd, with a password-authenticated role `fastmon_test` that may create databases.
#
#   bash test/setup/postgres.sh [start]   install + initialise + start (a quick no-op when it answers)
#   bash test/setup/postgres.sh stop      stop the cluster (fast shutdown)
#   bash test/setup/postgres.sh restart   stop, then start
#   bash test/setup/postgres.sh status    print whether it answers and the postmaster's pid
#   bash test/setup/postgres.sh url       print the test URL (postgresql://fastmon_test:…@127.0.0.1:54329/fastmon_test)
#
# Needs root for everything but `status`, `url` and the already-running case. Idempotent.
set -euo pipefail

HOST=127.0.0.1
PORT=${FASTMON_PG_PORT:-54329}
BASE=/var/lib/fastmon-pg
DATA=$BASE/data
SOCKET_DIR=$BASE/socket
LOG=$BASE/postgres.log
RUN_USER=postgres
ROLE=fastmon_test
# A test-only password for a cluster that listens on loopback only; the tests check it never reaches a log.
ROLE_PASSWORD=fastmon-test-pg-secret
DATABASE=fastmon_test
WAIT_SECONDS=${FASTMON_PG_WAIT_SECONDS:-60}

# shellcheck source=test/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The newest PostgreSQL installed under /usr/lib/postgresql (Debian installs versions side by side).
pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $d && -x $d/postgres ]] && echo "$d"
}

# True when the cluster accepts connections on HOST:PORT (pg_isready does not need a password).
answers() {
  local bin
  bin=$(pg_bin) || return 1
  "$bin/pg_isready" -q -h "$HOST" -p "$PORT" -t 3 2>/dev/null
}

postmaster_pid() {
  [[ -f $DATA/postmaster.pid ]] || return 0
  local pid
  pid=$(head -n 1 "$DATA/postmaster.pid")
  [[ -n $pid && -d /proc/$pid ]] && echo "$pid"
  return 0
}

install_package() {
  pg_bin >/dev/null && return
  if [[ $(id -u) != 0 ]]; then
    printf 'postgres.sh: PostgreSQL is not installed. Run:\n' >&2
    printf '  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql\n' >&2
    exit 1
  fi
  say 'installing the Debian package postgresql ...'
  apt-get update -q
  # policy-rc.d 101: the package must not start Debian's own cluster (no systemd here anyway).
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql || { ((created)) && rm -f "$policy"; exit 1; }
  ((created)) && rm -f "$policy"
  pg_bin >/dev/null || die 'postgresql installed, but no /usr/lib/postgresql/*/bin/postgres found'
}

as_pg() { setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups "$@"; }

# initdb once; the settings this cluster needs are (re)written to postgresql.auto.conf-like include.
init_cluster() {
  local bin=$1
  id "$RUN_USER" >/dev/null 2>&1 || die "no $RUN_USER user (the postgresql package creates it)"
  mkdir -p "$BASE" "$SOCKET_DIR"
  chown "$RUN_USER:" "$BASE" "$SOCKET_DIR"
  chmod 0755 "$BASE" "$SOCKET_DIR"
  if [[ ! -s $DATA/PG_VERSION ]]; then
    say "initialising a private cluster in $DATA ..."
    rm -rf "$DATA"
    (cd "$BASE" && as_pg "$bin/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=peer --auth-host=scram-sha-256 >/dev/null)
  fi
  # Loopback only, our own port and socket directory; small, quiet settings for a shared test machine.
  cat >"$DATA/fastmon.conf" <<EOF
# Written by swf-fastmon test/setup/postgres.sh: a private test cluster, loopback only.
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$SOCKET_DIR'
max_connections = 200
shared_buffers = 128MB
password_encryption = 'scram-sha-256'
log_min_messages = warning
log_connections = off
log_statement = 'none'
EOF
  chown "$RUN_USER:" "$DATA/fastmon.conf"
  grep -q "^include_if_exists = 'fastmon.conf'" "$DATA/postgresql.conf" ||
    printf "\ninclude_if_exists = 'fastmon.conf'\n" >>"$DATA/postgresql.conf"
  # Only loopback TCP with a password, plus peer for the postgres superuser on the socket.
  cat >"$DATA/pg_hba.conf" <<EOF
# Written by swf-fastmon test/setup/postgres.sh.
local   all   postgres                  peer
host    all   all        127.0.0.1/32   scram-sha-256
EOF
  chown "$RUN_USER:" "$DATA/pg_hba.conf"
}

start_cluster() {
  local bin=$1
  [[ -f $LOG && $(stat -c %s "$LOG") -gt 10000000 ]] && mv -f "$LOG" "$LOG.1"
  touch "$LOG"
  chown "$RUN_USER:" "$LOG"
  # No inherited descriptor but stdio: the postmaster must not hold (forever) this script's lock, nor that
  # of whoever ran this script (see launch in lib.sh).
  (cd "$BASE" && close_inherited_fds && as_pg setsid "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$WAIT_SECONDS" start \
    </dev/null >/dev/null) || {
    tail -n 40 "$LOG" >&2 || true
    die "the cluster did not start (log: $LOG)"
  }
  say "PostgreSQL answers on $HOST:$PORT (pid $(postmaster_pid), data $DATA, log $LOG)"
}

psql_admin() { as_pg "$(pg_bin)/psql" -h "$SOCKET_DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

ensure_role() {
  if [[ $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'") != 1 ]]; then
    psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$ROLE_PASSWORD'"
    say "created role $ROLE"
  fi
  if [[ $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'") != 1 ]]; then
    psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE"
    say "created database $DATABASE"
  fi
}

stop_cluster() {
  local pid
  pid=$(postmaster_pid)
  [[ -n $pid ]] || { say 'cluster not running'; return 0; }
  say "stopping the cluster (pid $pid) ..."
  as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null || kill -KILL "$pid" 2>/dev/null || true
  say 'stopped'
}

url() { printf 'postgresql://%s:%s@%s:%s/%s\n' "$ROLE" "$ROLE_PASSWORD" "$HOST" "$PORT" "$DATABASE"; }

cmd=${1:-start}
case $cmd in
  url) url ;;
  status)
    if answers; then say "PostgreSQL answers on $HOST:$PORT"; else say "PostgreSQL does not answer on $HOST:$PORT"; fi
    pid=$(postmaster_pid)
    say "postmaster pid: ${pid:-none}; data: $DATA; log: $LOG"
    [[ -n $pid ]]
    ;;
  stop)
    need_root 'stopping the cluster' stop
    take_lock postgres 120
    stop_cluster
    ;;
  start | restart)
    if [[ $cmd == start ]] && answers; then
      say "PostgreSQL already answers on $HOST:$PORT"
      exit 0
    fi
    install_package
    need_root 'initialising and starting PostgreSQL' "$cmd"
    take_lock postgres 120
    BIN=$(pg_bin)
    if [[ $cmd == restart ]]; then stop_cluster; fi
    if ! answers; then
      init_cluster "$BIN"
      [[ -n $(postmaster_pid) ]] && stop_cluster # running but not answering: start afresh
      start_cluster "$BIN"
    fi
    ensure_role
    ;;
  *) die "usage: $0 [start|stop|restart|status|url]" ;;
esac
