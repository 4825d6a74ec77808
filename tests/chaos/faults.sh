# tests/chaos/faults.sh - the faults of a chaos run (sourced by
# tests/chaos/chaos.sh). Every fault is written to $WORK/faults.log as
# "<ms> <kind> <target> <detail>" when it starts (and, for the ones with a
# duration, when it ends): the checker explains duplicates from it.
#
# Only the private servers of the run are restarted or killed; processes
# are signalled by the ids the driver recorded, never by name.

# sink_mode JSON: change the mode of both sinks.
sink_mode() {
  local p
  for p in "$SINK_PORT" "$SINKH_PORT"; do
    curl -s --max-time 5 -X POST -H 'Content-Type: application/json' \
      --data "$1" "http://127.0.0.1:$p/mode" >/dev/null || true
  done
}

rand() { echo $((RANDOM % $1)); }

# The fault kinds other than the steady consumer kills, per backend.
fault_kinds() {
  local k=(stop_consumer broker_restart sink_500 net_cut sink_429
    watchdog_kill sink_latency cpu_starve broker_kill sink_hang
    stop_consumer net_cut)
  if [ "$1" = pg ]; then
    k+=(pg_restart pg_immediate)
  else
    k+=(sqlite_lock sqlite_lock)
  fi
  local skip=",${SKIP_FAULTS:-},"
  local x
  for x in "${k[@]}"; do
    case $skip in *",$x,"*) ;; *) echo "$x" ;; esac
  done | shuf
}

kill_consumer() {
  local i=$(($(rand 3) + 1))
  local p=${PID[c$i]:-}
  [ -n "$p" ] || return 0
  fault kill9 "c$i.${INCARN[c$i]}" "$p"
  kill -KILL -- "-$p" 2>/dev/null
  wait "$p" 2>/dev/null
  KILLS=$((KILLS + 1))
  sleep 1
  start_consumer "$i"
}

# A fault with a duration runs in a subshell in the background; these run
# one at a time per resource (broker, registry, sink, proxy) so each one
# heals before the next of its kind.
bg_fault() { # RESOURCE FUNCTION ARGS...
  local res=$1
  shift
  if [ -n "${BUSY[$res]:-}" ] && kill -0 "${BUSY[$res]}" 2>/dev/null; then
    return 1
  fi
  ("$@") &
  BUSY[$res]=$!
  FAULT_JOBS_PIDS="$FAULT_JOBS_PIDS $!"
}

f_stop_consumer() { # PID NAME: past the lease (4 s) and the grace (5 s)
  fault stop "$2" "$1"
  kill -STOP -- "-$1" 2>/dev/null
  sleep 14
  kill -CONT -- "-$1" 2>/dev/null
  fault cont "$2" "$1"
}

f_broker_restart() {
  fault broker_stop_app node
  rmqctl stop_app >/dev/null 2>&1
  sleep 4
  rmqctl start_app >/dev/null 2>&1
  fault broker_start_app node
}

f_broker_kill() {
  fault broker_kill9 node
  rmq_kill9
  sleep 2
  rmq_boot
  fault broker_booted node
}

f_pg_restart() {
  fault pg_restart fast
  pg_ctl_do restart -m fast
  fault pg_up fast
}

f_pg_immediate() {
  fault pg_stop immediate
  pg_ctl_do stop -m immediate
  sleep 3
  pg_ctl_do start
  fault pg_up immediate
}

f_sqlite_lock() {
  fault sqlite_lock "$SQLITE_PATH" 5s
  $PY "$HERE/holdlock.py" "$SQLITE_PATH" 5 >>"$WORK/logs/holdlock.log" 2>&1
  fault sqlite_unlock "$SQLITE_PATH"
}

f_net_cut() {
  local p=${PID[proxy]}
  fault net_cut proxy "$p"
  kill -STOP -- "-$p" 2>/dev/null
  sleep 8
  kill -CONT -- "-$p" 2>/dev/null
  fault net_heal proxy "$p"
}

f_sink() { # KIND ON-JSON SECONDS OFF-JSON
  fault "sink_$1" sinks "$2"
  sink_mode "$2"
  sleep "$3"
  sink_mode "$4"
  fault "sink_$1_end" sinks "$4"
}

f_cpu_starve() {
  fault cpu_starve stress-ng 10s
  stress-ng --cpu 2 --timeout 10s >>"$WORK/logs/stress.log" 2>&1
  fault cpu_end stress-ng
}

other_fault() { # KIND
  case $1 in
  stop_consumer)
    local i=$(($(rand 3) + 1))
    bg_fault "stop$i" f_stop_consumer "${PID[c$i]}" "c$i.${INCARN[c$i]}" ;;
  broker_restart) bg_fault broker f_broker_restart ;;
  broker_kill) bg_fault broker f_broker_kill ;;
  pg_restart) bg_fault registry f_pg_restart ;;
  pg_immediate) bg_fault registry f_pg_immediate ;;
  sqlite_lock) bg_fault registry f_sqlite_lock ;;
  net_cut) bg_fault proxy f_net_cut ;;
  sink_500) bg_fault sink f_sink 500 '{"fail_until_ms":3000}' 3 '{"fail_until_ms":0}' ;;
  sink_429) bg_fault sink f_sink 429 '{"status_429":0.5,"retry_after":1}' 5 '{"status_429":0}' ;;
  sink_latency) bg_fault sink f_sink latency '{"latency_ms":800}' 6 '{"latency_ms":0}' ;;
  sink_hang) bg_fault sink f_sink hang '{"hang":true}' 5 '{"hang":false}' ;;
  cpu_starve) bg_fault cpu f_cpu_starve ;;
  watchdog_kill)
    local w=$(($(rand 2) + 1))
    fault kill9 "w$w.${INCARN[w$w]}" "${PID[w$w]}"
    kill -KILL -- "-${PID[w$w]}" 2>/dev/null
    wait "${PID[w$w]}" 2>/dev/null
    sleep 1
    start_watchdog "$w" ;;
  esac
}

# inject_faults BACKEND SECONDS: a consumer kill -9 about every 6 s, and
# between them one of the other faults in turn; the window is stretched
# until there were at least 20 kills.
inject_faults() {
  local backend=$1 end=$((SECONDS + $2)) kinds=() n=0
  declare -gA BUSY=()
  FAULT_JOBS_PIDS=
  KILLS=0
  mapfile -t kinds < <(fault_kinds "$backend")
  say "faults for $2 s"
  while [ $SECONDS -lt "$end" ] || [ $KILLS -lt 20 ]; do
    kill_consumer
    sleep 2
    # A consumer that died by itself is a finding (the checker reports
    # its log); restart it so the run goes on.
    local i
    for i in 1 2 3; do
      proc_alive "c$i" || {
        fault died "c$i.${INCARN[c$i]}" "-"
        start_consumer "$i"
      }
    done
    other_fault "${kinds[$((n % ${#kinds[@]}))]}" && n=$((n + 1))
    sleep 3
  done
  say "faults over: $KILLS consumer kills, $n other faults; healing"
}

# heal: wait for the running faults to end by themselves (each is bounded),
# then make sure every part is up and every mode normal.
heal() {
  local p
  for p in $FAULT_JOBS_PIDS; do wait "$p" 2>/dev/null; done
  sink_mode '{"latency_ms":0,"error_rate":0,"fail_until_ms":0,"status_429":0,"hang":false}'
  kill -CONT -- "-${PID[proxy]}" 2>/dev/null
  local i
  for i in 1 2 3; do
    kill -CONT -- "-${PID[c$i]}" 2>/dev/null
    proc_alive "c$i" || start_consumer "$i"
  done
  for i in 1 2; do proc_alive "w$i" || start_watchdog "$i"; done
  rmqctl await_startup --timeout 120 >/dev/null 2>&1 ||
    rmqctl start_app >/dev/null 2>&1 || true
  if [ "$1" = pg ]; then
    pg_ctl_do status >/dev/null 2>&1 || pg_ctl_do start
  fi
  fault healed all
}
