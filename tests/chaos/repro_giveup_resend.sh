#!/bin/bash
# repro_giveup_resend.sh BUILD_DIR - a finding of the chaos run, alone:
# one consumer, no kill, no stop, a provider that is slow (300 ms) and fails
# 30% of requests with 500. Sometimes a recipient exhausts its retries;
# the worker then releases the campaign at once, dropping the requests
# still in flight - the provider accepts them anyway, their SENT marks are
# never written, and the resume sends them again. Promise 2 allows a resend
# only when a worker dies between acceptance and the SENT mark.
#
# Uses the shared broker from /var/lib/sendonce-dev/test.env with a unique
# topology prefix (removed afterwards) and a SQLite registry in a temp dir.
# Prints the sink's counters: accepted_duplicates > 0 is the bug.
set -u
B=${1:?usage: repro_giveup_resend.sh BUILD_DIR}
D=$(mktemp -d /tmp/sendonce-repro.XXXXXX)
PREFIX=repro-giveup-$$
set -a
. /var/lib/sendonce-dev/test.env
set +a
PW=$SENDONCE_BROKER_PASSWORD
for v in $(env | sed -n 's/^\(SENDONCE_[A-Z0-9_]*\)=.*/\1/p'); do unset "$v"; done
export SENDONCE_BROKER_PASSWORD=$PW

"$B/tests/sendonce-sink" --port 0 --log "$D/sink.jsonl" --latency-ms 300 \
  --error-rate 0.3 >"$D/sink.out" 2>&1 &
SINKP=$!
sleep 1
PORT=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$D/sink.out")
cat >"$D/r.conf" <<EOF
broker = { uri = "amqp://127.0.0.1:5672/sendonce"; user = "sendonce"; };
topology = { prefix = "$PREFIX"; retry_delays_s = [ 1, 2, 4 ]; };
registry = { backend = "sqlite"; sqlite_path = "$D/r.db"; lease_ttl_s = 6;
  busy_timeout_ms = 1000; };
consumer = { workers = 1; max_attempts = 100; };
providers = { email = { url = "http://127.0.0.1:$PORT/email"; timeout_ms = 3000;
  concurrency = 8; max_retries = 3; retry_base_ms = 100; }; };
metrics = { enabled = false; };
watchdog = { grace_s = 10; };
EOF
/usr/bin/python3 -c '
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(2000):
        f.write(json.dumps({"id": "u-%d" % i, "address": "u%d@x" % i}) + "\n")' "$D/l.jsonl"
echo '{"subject":"s"}' >"$D/c.json"
"$B/consumer/sendonce-consumer" --config "$D/r.conf" run >"$D/consumer.log" 2>&1 &
CP=$!
sleep 2
"$B/publisher/sendonce-publisher" --config "$D/r.conf" schedule --id rep \
  --at now --channel email --content "$D/c.json" \
  --recipients-url "file://$D/l.jsonl" >/dev/null
"$B/publisher/sendonce-publisher" --config "$D/r.conf" publish rep >/dev/null
for _ in $(seq 1 120); do
  curl -s "http://127.0.0.1:$PORT/stats" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d["accepted_duplicates"] > 0 or d["unique_keys"] >= 2000 else 1)' && break
  sleep 1
done
echo "releases (gave up): $(grep -c 'released campaign' "$D/consumer.log")"
curl -s "http://127.0.0.1:$PORT/stats" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
print("unique_keys=%d accepted=%d accepted_duplicates=%d" % (
    d["unique_keys"], d["accepted"], d["accepted_duplicates"]))
print("e.g.", d["accepted_twice_keys"][:3])'
kill "$CP" "$SINKP" 2>/dev/null
wait "$CP" "$SINKP" 2>/dev/null
for q in campaigns dead retry.1s retry.2s retry.4s; do
  printf 'user = "sendonce:%s"\n' "$PW" | curl -s -K - -o /dev/null -X DELETE \
    "http://127.0.0.1:15672/api/queues/sendonce/$PREFIX.$q"
done
for x in "" .dlx .events; do
  printf 'user = "sendonce:%s"\n' "$PW" | curl -s -K - -o /dev/null -X DELETE \
    "http://127.0.0.1:15672/api/exchanges/sendonce/$PREFIX$x"
done
echo "logs: $D"
