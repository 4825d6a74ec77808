#!/bin/bash
# tests/chaos/chaos.sh - the whole sendonce system under injected faults,
# and a checker that counts what was lost and what arrived twice.
#
#   chaos.sh --build DIR [--backend sqlite|pg|both] [--fault-seconds N]
#            [--drain-seconds N] [--big N] [--keep] [--skip-faults K,K]
#            [--opt-in VAR]
#
# --skip-faults leaves fault kinds out (names as in faults.sh fault_kinds,
# e.g. sink_429,broker_restart), to tell one finding from another;
# --opt-in VAR exits 77 (skipped) unless $VAR is 1.
#
# Per backend: a private RabbitMQ node and (pg) a private PostgreSQL
# cluster (tests/chaos/servers.sh; the shared servers are never touched),
# two sinks (email: a plain provider; sms: one that honours Idempotency-Key),
# a socat proxy between the consumers and the broker, the publisher daemon,
# 3 consumers and 2 watchdogs, time compressed (heartbeat 2 s, lease 4 s,
# watchdog every 1 s, grace 5 s). Campaigns of 1 to --big recipients fall
# due during the fault window, several at one time, some also triggered by a
# second client (python3-pika), a few registered only by that client. Faults
# (tests/chaos/faults.sh) run for --fault-seconds, then everything is healed
# and the system gets --drain-seconds to finish. tests/chaos/check.py then
# reads the sinks' logs, the fault log and the consumers' logs.
#
# Exit status: 0 all promises held; 1 a promise broke or the run failed.
# Runs as root (the private servers run as rabbitmq and postgres).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=
BACKENDS=(sqlite pg)
FAULT_SECONDS=150
DRAIN_SECONDS=300
BIG=50000
KEEP=0
SKIP_FAULTS=
PY=/usr/bin/python3

while [ $# -gt 0 ]; do
  case $1 in
  --build) BUILD=$2; shift ;;
  --backend)
    case $2 in
    both) BACKENDS=(sqlite pg) ;;
    sqlite | pg) BACKENDS=("$2") ;;
    *) echo "chaos: --backend sqlite|pg|both" >&2; exit 2 ;;
    esac
    shift ;;
  --fault-seconds) FAULT_SECONDS=$2; shift ;;
  --drain-seconds) DRAIN_SECONDS=$2; shift ;;
  --big) BIG=$2; shift ;;
  --keep) KEEP=1 ;;
  --skip-faults) SKIP_FAULTS=$2; shift ;;
  --opt-in)
    # Registered but pending: runs only when the variable is 1.
    if [ "${!2:-0}" != 1 ]; then
      echo "chaos: skipped (set $2=1 to run it)"
      exit 77
    fi
    shift ;;
  *) echo "chaos: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$BUILD" ] || { echo "chaos: --build DIR is required" >&2; exit 2; }
BUILD=$(cd "$BUILD" && pwd)
CONSUMER=$BUILD/consumer/sendonce-consumer
PUBLISHER=$BUILD/publisher/sendonce-publisher
WATCHDOG=$BUILD/watchdog/sendonce-watchdog
SINK=$BUILD/tests/sendonce-sink
for b in "$CONSUMER" "$PUBLISHER" "$WATCHDOG" "$SINK"; do
  [ -x "$b" ] || { echo "chaos: $b not built" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "chaos: run as root (private servers)" >&2; exit 1; }
for t in socat stress-ng curl runuser; do
  command -v "$t" >/dev/null || { echo "chaos: $t missing (scripts/setup)" >&2; exit 1; }
done

# The sanitizers report, never abort mid-run: a leak report at exit is
# found by the checker in the logs (a crash still shows as a crash).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=66
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=0
# Nothing a developer exported may bend the run's config.
for v in $(env | sed -n 's/^\(SENDONCE_[A-Z0-9_]*\)=.*/\1/p'); do unset "$v"; done

now_ms() { date +%s%3N; }
say() { printf '%s chaos: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
free_port() {
  $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}
# fault KIND TARGET [DETAIL]: one line of the fault log the checker reads.
fault() { printf '%s %s %s %s\n' "$(now_ms)" "$1" "$2" "${3:--}" >>"$WORK/faults.log"; }

. "$HERE/servers.sh"
. "$HERE/faults.sh"

SUMMARY=$(mktemp /tmp/sochaos-summary.XXXXXX)
RESULT=0

# ------------------------------------------------------------ processes
declare -A PID       # name -> pid (each started in its own session)
declare -A INCARN    # consumer/watchdog name -> incarnation number

start_proc() { # NAME LOGFILE CMD...: in its own session, so kill -- -pid
  local name=$1 log=$2
  shift 2
  : >>"$log"
  setsid "$@" >>"$log" 2>&1 </dev/null &
  PID[$name]=$!
}

proc_alive() { [ -n "${PID[$1]:-}" ] && kill -0 "${PID[$1]}" 2>/dev/null; }

stop_proc() { # NAME: SIGTERM, then SIGKILL after 15 s
  local p=${PID[$1]:-}
  [ -n "$p" ] || return 0
  kill -CONT -- "-$p" 2>/dev/null
  kill -TERM "$p" 2>/dev/null
  local i
  for i in $(seq 1 150); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$p" 2>/dev/null
  wait "$p" 2>/dev/null
  local rc=$?
  # What each program said at a SIGTERM: 0, or a finding (leak: 66).
  local tag=$1
  [ -n "${INCARN[$1]:-}" ] && tag=$1.${INCARN[$1]}
  echo "$tag $rc" >>"$WORK/exits.log"
  PID[$1]=
}

start_consumer() { # I
  local i=$1 k=$((${INCARN[c$1]:-0} + 1))
  INCARN[c$i]=$k
  SENDONCE_CONSUMER_OWNER="c$i.$k" SENDONCE_BROKER_URI="amqp://127.0.0.1:$PROXY_PORT/$RMQ_VHOST" \
    start_proc "c$i" "$WORK/logs/consumer-c$i.$k.log" "$CONSUMER" --config "$CONF" run
  echo "$(now_ms) c$i.$k ${PID[c$i]}" >>"$WORK/incarnations.log"
}

start_watchdog() { # I
  local i=$1 k=$((${INCARN[w$1]:-0} + 1))
  INCARN[w$i]=$k
  start_proc "w$i" "$WORK/logs/watchdog-w$i.$k.log" "$WATCHDOG" --config "$CONF" run
}

start_proxy() {
  start_proc proxy "$WORK/logs/proxy.log" socat \
    "TCP-LISTEN:$PROXY_PORT,bind=127.0.0.1,reuseaddr,fork" \
    "TCP:127.0.0.1:$RMQ_PORT"
}

start_sink() { # NAME [FLAGS]
  local name=$1
  shift
  start_proc "$name" "$WORK/logs/$name.out" "$SINK" --port 0 \
    --log "$WORK/$name.jsonl" --threads 4 "$@"
  local i port=
  for i in $(seq 1 100); do
    port=$(sed -n 's/.*listening port=\([0-9]*\).*/\1/p' "$WORK/logs/$name.out" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || die "$name did not start"
  eval "${name^^}_PORT=$port"
}

write_config() { # BACKEND
  local reg
  if [ "$1" = sqlite ]; then
    reg="backend = \"sqlite\"; sqlite_path = \"$SQLITE_PATH\";"
  else
    reg="backend = \"postgresql\"; pg_conninfo = \"$PG_CONNINFO\";"
  fi
  local body='"{\"to\":\"{{address}}\",\"campaign_id\":\"{{campaign_id}}\",\"recipient_id\":\"{{recipient_id}}\",\"subject\":\"{{content.subject}}\"}"'
  cat >"$CONF" <<EOF
# generated by tests/chaos/chaos.sh: time compressed
broker = { uri = "amqp://127.0.0.1:$RMQ_PORT/$RMQ_VHOST"; user = "$RMQ_USER";
  heartbeat_s = 2; connect_timeout_ms = 3000; confirm_timeout_ms = 5000;
  reconnect_min_ms = 200; reconnect_max_ms = 2000; };
topology = { prefix = "chaos"; delivery_limit = 50; retry_delays_s = [ 1, 2, 4 ]; };
registry = { $reg lease_ttl_s = 4; busy_timeout_ms = 1000; mark_batch_size = 50; };
# 64 KiB: the size the bad-message corpus is written for (39-too-large).
consumer = { workers = 2; max_attempts = 100; max_message_bytes = 65536; };
providers = {
  email = { url = "http://127.0.0.1:$SINK_PORT/email"; body_template = $body;
    timeout_ms = 3000; concurrency = 8; max_retries = 3; retry_base_ms = 100; };
  sms = { url = "http://127.0.0.1:SINKH_PORT_X/sms"; body_template = $body;
    timeout_ms = 3000; concurrency = 8; max_retries = 3; retry_base_ms = 100; };
};
watchdog = { interval_s = 1; grace_s = 5; stuck_after_s = 60;
  republish_backoff_s = 3; max_republishes = 1000;
  mgmt_url = "http://127.0.0.1:$RMQ_MGMT_PORT"; };
metrics = { enabled = false; };
log = { level = "info"; format = "kv"; };
EOF
  sed -i "s/SINKH_PORT_X/$SINKH_PORT/" "$CONF"
}

# ------------------------------------------------------------ campaigns
# make_list ID N: recipients u-0..u-(N-1), one JSON line each.
make_list() {
  $PY - "$WORK/lists/$1.jsonl" "$2" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"id": "u-%d" % i, "address": "u%d@example.org" % i}) + "\n")
PY
}

# plan: one line per campaign: ID N CHANNEL DUE_OFFSET_S HOW
#   HOW = sched (publisher schedule), both (schedule + pika duplicate),
#         pika (registered only from the second client's message)
plan_campaigns() {
  local f=$FAULT_SECONDS n=0 t sizes=(1 10 300 2000 50 5000 1 700 20000 3)
  echo "big-0 $BIG email 4 both"
  echo "big-1 $((BIG / 5)) sms 6 both"
  # three campaigns sharing one due time, early in the window
  echo "shared-a 1000 email 8 sched"
  echo "shared-b 1000 sms 8 both"
  echo "shared-c 500 email 8 pika"
  for ((t = 12; t < f - 15; t += 9)); do
    local s=${sizes[$((n % ${#sizes[@]}))]} ch=email how=sched
    [ $((n % 2)) = 1 ] && ch=sms
    [ $((n % 3)) = 0 ] && how=both
    [ $((n % 7)) = 5 ] && how=pika
    echo "c$n $s $ch $t $how"
    echo "d$n $((s / 2 + 1)) $ch $t sched"
    n=$((n + 1))
  done
}

schedule_campaigns() {
  local id n ch off how due
  printf '{"subject":"chaos"}\n' >"$WORK/content.json"
  mkdir -p "$WORK/lists" "$WORK/bodies"
  plan_campaigns >"$WORK/plan.txt"
  while read -r id n ch off how; do
    id="$RUN_ID-$id"
    make_list "$id" "$n"
    due=$(date -u -d "@$((T0 / 1000 + off))" +%Y-%m-%dT%H:%M:%SZ)
    echo "$id $n $ch $due $how $WORK/lists/$id.jsonl" >>"$WORK/campaigns.txt"
    if [ "$how" != pika ]; then
      "$PUBLISHER" --config "$CONF" schedule --id "$id" --at "$due" \
        --channel "$ch" --content "$WORK/content.json" \
        --recipients-url "file://$WORK/lists/$id.jsonl" \
        >>"$WORK/logs/schedule.log" 2>&1 || die "schedule $id failed"
    fi
    if [ "$how" != sched ]; then
      $PY - "$WORK/bodies/$id.json" "$id" "$due" "$ch" "file://$WORK/lists/$id.jsonl" <<'PY'
import json, sys
path, cid, due, ch, url = sys.argv[1:6]
json.dump({"schema": 1, "campaign_id": cid, "scheduled_at": due, "channel": ch,
           "content": {"subject": "chaos"}, "recipients_url": url}, open(path, "w"))
PY
      echo "$((T0 / 1000 + off)) $WORK/bodies/$id.json" >>"$WORK/pika-due.txt"
    fi
  done <"$WORK/plan.txt"
}

# The second client publishes each of its triggers a few seconds after the
# due time, while the campaign may already be in progress: in background.
pika_triggers() {
  (
    sort -n "$WORK/pika-due.txt" | while read -r at body; do
      local wait=$((at + 3 - $(date +%s)))
      [ "$wait" -gt 0 ] && sleep "$wait"
      pika_env $PY "$HERE/trigger.py" --tries 60 "$body" >>"$WORK/logs/pika.log" 2>&1
    done
  ) &
  PIKA_JOB=$!
}

pika_env() {
  CHAOS_AMQP_PORT=$RMQ_PORT CHAOS_VHOST=$RMQ_VHOST CHAOS_EXCHANGE=chaos \
    CHAOS_USER=$RMQ_USER CHAOS_PASSWORD=$RMQ_PASSWORD "$@"
}

# ------------------------------------------------------------ one run
states_json() {
  "$PUBLISHER" --config "$CONF" list --json --limit 100000 2>>"$WORK/logs/list.err"
}

# drain: every campaign DONE or DEAD and the work queues empty.
drain() {
  local deadline=$((SECONDS + DRAIN_SECONDS)) left=
  while [ $SECONDS -lt $deadline ]; do
    left=$(states_json | $PY -c '
import json, sys
ids = [l.split()[0] for l in open(sys.argv[1])]
st = {c["campaign_id"]: c["state"] for c in json.load(sys.stdin)}
print(sum(1 for i in ids if st.get(i) not in ("DONE", "DEAD")))' "$WORK/campaigns.txt" 2>/dev/null)
    if [ "$left" = 0 ]; then
      say "drain: every campaign finished ($((SECONDS - FAULT_END))s after the faults)"
      break
    fi
    sleep 2
  done
  # Duplicate triggers still queued or in retry queues are dropped by the
  # claim (done): give them time to be consumed.
  while [ $SECONDS -lt $((deadline + 60)) ]; do
    # rabbitmqctl, not the management API: its counts can be missing
    # for a while after a broker restart.
    rmqctl list_queues -p "$RMQ_VHOST" --no-table-headers name messages 2>/dev/null |
      $PY -c '
import json, sys
q = []
for line in sys.stdin:
    f = line.split()
    if len(f) == 2 and f[1].isdigit():
        q.append({"name": f[0], "messages": int(f[1])})
json.dump(q, open(sys.argv[1], "w"))
busy = [x for x in q if not x["name"].endswith(".dead") and x["messages"] > 0]
# A quorum queue that has just been restarted reports 0 messages until its
# counters catch up (seen after stop_app/start_app): wait for the DLQ to
# show what it holds too; the checker judges the last snapshot.
want = int(open(sys.argv[2]).read())
dead = [x for x in q if x["name"].endswith(".dead")]
settling = any(x["messages"] != want for x in dead)
sys.exit(1 if busy or settling or not q else 0)' "$WORK/queues.json" \
      "$WORK/expected-dead.txt" && break
    sleep 2
  done
  states_json >"$WORK/final-states.json"
  local i
  for i in 1 2 3; do
    proc_alive "c$i" || fault died "c$i.${INCARN[c$i]}" "-"
  done
}

run_backend() { # BACKEND
  local backend=$1
  WORK=$(mktemp -d /tmp/sochaos.XXXXXX)
  chmod 0755 "$WORK"
  mkdir -p "$WORK/logs"
  : >"$WORK/faults.log"
  RUN_ID="x$(date +%H%M%S)$backend"
  CONF=$WORK/chaos.conf
  SQLITE_PATH=$WORK/registry.db
  say "=== backend $backend in $WORK"
  trap 'teardown; exit 1' INT TERM
  rmq_start
  if [ "$backend" = pg ]; then pg_start; fi
  PROXY_PORT=$(free_port)
  start_sink sink
  start_sink sinkh --honour-idempotency
  start_proxy
  write_config "$backend"
  export SENDONCE_BROKER_PASSWORD=$RMQ_PASSWORD
  export SENDONCE_WATCHDOG_MGMT_PASSWORD=$RMQ_PASSWORD
  [ "$backend" = pg ] && export SENDONCE_REGISTRY_PASSWORD=$PG_PASSWORD

  # The bad messages go in first (confirmed), so the DLQ must end with
  # exactly them; the consumers must go on after each.
  local bad=("$ROOT"/tests/data/bad-messages/[0-9][0-9]-*.json)
  start_proc pub "$WORK/logs/publisher.log" "$PUBLISHER" --config "$CONF" run
  local i
  for i in 1 2 3; do start_consumer $i; done
  for i in 1 2; do start_watchdog $i; done
  sleep 3
  pika_env $PY "$HERE/trigger.py" --raw "${bad[@]}" >>"$WORK/logs/pika.log" 2>&1 ||
    die "could not publish the bad messages"
  echo "${#bad[@]}" >"$WORK/expected-dead.txt"

  T0=$(($(now_ms) + 5000))
  schedule_campaigns
  say "$(wc -l <"$WORK/campaigns.txt") campaigns, $(awk '{s+=$2} END {print s}' "$WORK/campaigns.txt") recipients"
  pika_triggers
  sleep 4
  inject_faults "$backend" "$FAULT_SECONDS"
  FAULT_END=$SECONDS
  heal "$backend"
  drain
  wait "$PIKA_JOB" 2>/dev/null
  teardown
  # The consumers' and watchdogs' exit reports (ASan) are in their logs.
  $PY "$HERE/check.py" --work "$WORK" --backend "$backend" \
    --fault-seconds "$FAULT_SECONDS" --summary "$SUMMARY"
  local rc=$?
  [ $rc -eq 0 ] || RESULT=1
  if [ $rc -eq 0 ] && [ $KEEP = 0 ]; then
    rm -rf "$WORK"
  else
    say "logs kept in $WORK"
  fi
  trap - INT TERM
}

teardown() {
  local n
  [ -n "${FAULT_JOBS_PIDS:-}" ] && kill $FAULT_JOBS_PIDS 2>/dev/null
  : >>"$WORK/exits.log"
  for n in pub c1 c2 c3 w1 w2 proxy sink sinkh; do stop_proc "$n"; done
  rmq_stop
  pg_stop
  # The servers' data is no evidence; their logs stay with a failed run.
  [ -n "${RMQ_DIR:-}" ] && rm -rf "$RMQ_DIR/mnesia"
  [ -n "${PG_DIR:-}" ] && rm -rf "$PG_DIR/data"
  RMQ_DIR=
  PG_DIR=
}

# main: in a function, so bash has read the whole file before it runs (an
# edit of this file during a run cannot derail it).
main() {
  local b
  for b in "${BACKENDS[@]}"; do
    run_backend "$b"
  done
  echo
  cat "$SUMMARY"
  rm -f "$SUMMARY"
  if [ $RESULT -ne 0 ]; then
    echo "chaos: FAILED"
    return 1
  fi
  echo "chaos: PASSED"
}
main; exit $?
