# tests/chaos/servers.sh - the chaos run's PRIVATE servers (sourced by
# tests/chaos/chaos.sh). The shared RabbitMQ (5672) and PostgreSQL (5432)
# serve other tests at the same time and must never be restarted or paused,
# so the run boots its own RabbitMQ node and PostgreSQL cluster on free
# loopback ports in $WORK, abuses them, and tears them down afterwards.
#
# Needs: $WORK (a temp dir), say/die/free_port from the driver. Runs as
# root (the servers run as the rabbitmq and postgres users).

RMQ_BIN=/usr/lib/rabbitmq/bin
PG_BIN=/usr/lib/postgresql/15/bin

# rmq_env: the environment of every command that talks to the private node.
# RABBITMQ_CONF_ENV_FILE points at an empty file so the shared node's
# /etc/rabbitmq/rabbitmq-env.conf (NODENAME, port 5672) is never read.
rmq_env() {
  rmq_envv "$@"
}

# rmq_envv_cmd: the same as an argv prefix (for setsid, which runs no
# shell function).
rmq_env_argv() {
  RMQ_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/rabbitmq
    LANG=C.UTF-8 LC_ALL=C.UTF-8
    RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf"
    RABBITMQ_NODENAME="$RMQ_NODE"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT="$RMQ_PORT"
    RABBITMQ_DIST_PORT="$RMQ_DIST_PORT"
    ERL_EPMD_ADDRESS=127.0.0.1
    RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf"
    RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_DIR/advanced.config"
    RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia"
    RABBITMQ_LOG_BASE="$RMQ_DIR/log"
    RABBITMQ_PID_FILE="$RMQ_DIR/node.pid")
}

rmq_envv() {
  rmq_env_argv
  "${RMQ_ENV[@]}" "$@"
}

rmqctl() {
  (cd "$RMQ_DIR" && rmq_env runuser -u rabbitmq -- "$RMQ_BIN/rabbitmqctl" -q -n "$RMQ_NODE" "$@")
}

rmq_boot() {
  (
    cd "$RMQ_DIR"
    rmq_env_argv
    setsid "${RMQ_ENV[@]}" runuser -u rabbitmq -- "$RMQ_BIN/rabbitmq-server" \
      >>"$RMQ_DIR/log/startup.out" 2>&1 </dev/null &
    echo $! >"$RMQ_DIR/server.pid"
  )
  local i
  for i in $(seq 1 120); do
    if rmqctl await_startup --timeout 5 >/dev/null 2>&1; then
      return 0
    fi
    sleep 1
  done
  tail -n 40 "$RMQ_DIR/log/startup.out" >&2
  die "private rabbitmq $RMQ_NODE did not start"
}

# rmq_start: configure and boot the node, create vhost/user (password on
# stdin), wait for the management API.
rmq_start() {
  RMQ_DIR=$WORK/rabbitmq
  RMQ_NODE=sochaos-$$@localhost
  RMQ_PORT=$(free_port)
  RMQ_DIST_PORT=$(free_port)
  RMQ_MGMT_PORT=$(free_port)
  RMQ_VHOST=chaos
  RMQ_USER=chaos
  RMQ_PASSWORD=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  install -d -o rabbitmq -g rabbitmq "$RMQ_DIR" "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
  : >"$RMQ_DIR/rabbitmq-env.conf"
  cat >"$RMQ_DIR/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$RMQ_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $RMQ_MGMT_PORT
distribution.listener.interface = 127.0.0.1
distribution.listener.port_range.min = $RMQ_DIST_PORT
distribution.listener.port_range.max = $RMQ_DIST_PORT
loopback_users.guest = true
collect_statistics_interval = 1000
EOF
  echo '[rabbitmq_management].' >"$RMQ_DIR/enabled_plugins"
  echo '[].' >"$RMQ_DIR/advanced.config"
  chown rabbitmq:rabbitmq "$RMQ_DIR"/*
  say "rabbitmq: booting private node $RMQ_NODE (amqp $RMQ_PORT, mgmt $RMQ_MGMT_PORT)"
  rmq_boot
  rmqctl add_vhost "$RMQ_VHOST" >/dev/null
  printf '%s\n' "$RMQ_PASSWORD" | rmqctl add_user "$RMQ_USER" >/dev/null
  rmqctl set_user_tags "$RMQ_USER" management >/dev/null
  rmqctl set_permissions -p "$RMQ_VHOST" "$RMQ_USER" '.*' '.*' '.*' >/dev/null
  rmq_wait_mgmt
}

rmq_wait_mgmt() {
  local i code=
  for i in $(seq 1 90); do
    code=$(mgmt_curl -o /dev/null -w '%{http_code}' /api/whoami || true)
    [ "$code" = 200 ] && return 0
    sleep 1
  done
  die "private rabbitmq management API does not answer (last $code)"
}

# mgmt_curl ARGS... PATH: the management API of the private node; the
# credentials reach curl on stdin, never argv.
mgmt_curl() {
  local path=${*: -1}
  local args=("${@:1:$#-1}")
  printf 'user = "%s:%s"\n' "$RMQ_USER" "$RMQ_PASSWORD" |
    curl -s -K - --max-time 10 "${args[@]}" "http://127.0.0.1:$RMQ_MGMT_PORT$path"
}

# rmq_kill9: kill -9 the node. rmq_boot started it in its own session
# (setsid), so its process group holds the wrapper and the Erlang VM and
# nothing else; the VM's port helpers exit with it.
rmq_kill9() {
  local pgid
  pgid=$(cat "$RMQ_DIR/server.pid" 2>/dev/null || true)
  [ -n "$pgid" ] && kill -KILL -- "-$pgid" 2>/dev/null
  sleep 1
}

rmq_stop() {
  [ -n "${RMQ_DIR:-}" ] || return 0
  rmqctl stop >/dev/null 2>&1 || true
  rmq_kill9 >/dev/null 2>&1 || true
}

# ------------------------------------------------------------ postgresql
pg_start() {
  PG_DIR=$WORK/pg
  PG_PORT=$(free_port)
  PG_ROLE=chaos
  PG_DB=chaos
  PG_PASSWORD=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  install -d -o postgres -g postgres -m 0700 "$PG_DIR"
  say "postgresql: initdb private cluster (port $PG_PORT)"
  (cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" \
    -A trust -U postgres --no-sync >"$WORK/initdb.log" 2>&1) ||
    {
      cat "$WORK/initdb.log" >&2
      die "initdb failed"
    }
  cat >>"$PG_DIR/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = off
max_connections = 100
password_encryption = 'scram-sha-256'
EOF
  cat >"$PG_DIR/data/pg_hba.conf" <<EOF
local all postgres trust
host all all 127.0.0.1/32 scram-sha-256
EOF
  pg_ctl_do start
  pg_psql -c "CREATE ROLE $PG_ROLE LOGIN" >/dev/null
  pg_psql -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE" >/dev/null
  printf "ALTER ROLE %s PASSWORD '%s';\n" "$PG_ROLE" "$PG_PASSWORD" |
    pg_psql -f - >/dev/null
  PG_CONNINFO="host=127.0.0.1 port=$PG_PORT dbname=$PG_DB user=$PG_ROLE connect_timeout=5"
}

pg_ctl_do() {
  (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -t 60 \
    -l "$PG_DIR/server.log" "$@" >>"$WORK/pg_ctl.log" 2>&1)
}

pg_psql() {
  (cd / && runuser -u postgres -- psql -X -q -t -A -v ON_ERROR_STOP=1 \
    -h "$PG_DIR" -p "$PG_PORT" -d postgres "$@")
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ] || return 0
  pg_ctl_do stop -m immediate || true
}
