"""The chaos run's checker: reads what a run left in its work directory and
decides whether the three promises held.

usage: check.py --work DIR --backend NAME --fault-seconds N --summary FILE

Inputs (written by tests/chaos/chaos.sh):
  campaigns.txt      "<id> <recipients> <channel> <due> <how> <list>" each
  final-states.json  `sendonce-publisher list --json` after the drain
  sink.jsonl         the email provider's log (does NOT honour keys)
  sinkh.jsonl        the sms provider's log (honours Idempotency-Key)
  faults.log         "<ms> <kind> <target> <detail>" per injected fault
  logs/consumer-<owner>.log   each consumer incarnation's log (owner =
                     c<i>.<k>; its workers claim as c<i>.<k>:w<n>)
  queues.json        the private broker's queues after the drain
  expected-dead.txt  how many bad messages must sit in the DLQ

Definitions:
  accepted arrival   a sink log line with a 2xx status that is not an
                     idempotent replay: the provider really sent it.
  lost               a recipient of a campaign with no accepted arrival.
  duplicate          every accepted arrival of a key after its first.
  explained          duplicate arrival a_j of key <campaign>:<recipient>,
                     previous accepted arrival a_(j-1), is explained when
                     (kill) a consumer incarnation that had claimed the
                       campaign (its log says "claimed campaign=<id>" no
                       later than the fault) was kill -9'd at f with
                       a_(j-1) - SLACK <= f <= a_j, or SIGSTOPped over an
                       interval [s, c] with s <= a_j and c >= a_(j-1) - SLACK:
                       the worker died (or froze past its lease) between the
                       provider's acceptance and the SENT mark;
                     (timeout) a_(j-1) is a request the hung provider
                       answered when the hang ended (logged from 0.5 s
                       before to SLACK after the sink_hang_end): the
                       worker's request had timed out, so it could not know
                       the provider had accepted, and a retry or a resume
                       sent the same Idempotency-Key again. Latency spikes
                       (0.8 s) stay under the request timeout (3 s) and
                       explain nothing.
                     (lease) a worker logged "lease LOST" or "campaign LOST"
                       for the campaign between a_(j-1) - SLACK and a_j:
                       the registry refused its writes (its lease had
                       lapsed, e.g. the registry was locked or down longer
                       than the lease ttl), so it stopped before its SENT
                       marks were written - for the system it died in the
                       in-flight window, exactly like a kill.
                     SLACK (2 s) covers the sink logging at answer time,
                     after a latency wait.
                     With the key-honouring provider there is no excuse:
                     every non-replayed second acceptance is unexplained.
  unexplained        duplicate - explained. Must be 0.
  died               consumers that exited by themselves during the run
                     (not killed by the run): a finding. Must be 0.
  not finished       a campaign not DONE (none is meant to be DEAD here),
                     or DONE with sent + rejected != recipients.
"""
import calendar
import glob
import json
import os
import re
import sys
import time

SLACK_MS = 2000
HANG_EARLY_MS = 500


def ts_ms(iso):
    # 2026-11-28T01:02:03.456Z
    base, frac = iso.rstrip("Z").split(".")
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return t * 1000 + int(frac[:3].ljust(3, "0"))


def read_faults(path):
    faults = []
    for line in open(path):
        parts = line.split()
        if len(parts) >= 3:
            faults.append((int(parts[0]), parts[1], parts[2],
                           parts[3] if len(parts) > 3 else "-"))
    return faults


START_KINDS = {"kill9", "stop", "broker_stop_app", "broker_kill9",
               "pg_restart", "pg_stop", "sqlite_lock", "net_cut",
               "sink_500", "sink_429", "sink_latency", "sink_hang",
               "cpu_starve"}


def consumer_claims(work):
    """owner -> {campaign: first claim ms}"""
    claims = {}
    pat = re.compile(r"^ts=(\S+) .*consumer: claimed campaign=(\S+) .*owner=([^\s:]+)")
    for path in glob.glob(os.path.join(work, "logs", "consumer-*.log")):
        for line in open(path, errors="replace"):
            m = pat.match(line)
            if m:
                d = claims.setdefault(m.group(3), {})
                d.setdefault(m.group(2), ts_ms(m.group(1)))
    return claims


def lease_losses(work):
    """campaign -> [ms] at which a worker logged that it lost the campaign's
    lease (its registry writes were refused: it stopped)"""
    lost = {}
    pat = re.compile(r"^ts=(\S+) .*consumer: (?:lease|campaign) LOST campaign=(\S+)")
    for path in glob.glob(os.path.join(work, "logs", "consumer-*.log")):
        for line in open(path, errors="replace"):
            m = pat.match(line)
            if m:
                lost.setdefault(m.group(2), []).append(ts_ms(m.group(1)))
    return lost


def sanitizer_reports(work):
    bad = []
    pat = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                     r"runtime error:|Segmentation fault|SUMMARY: \w+Sanitizer")
    for path in sorted(glob.glob(os.path.join(work, "logs", "*.log"))):
        for line in open(path, errors="replace"):
            if pat.search(line):
                bad.append("%s: %s" % (os.path.basename(path), line.strip()))
                break
    return bad


def arrivals(path):
    """key -> sorted list of accepted arrival ms"""
    acc = {}
    if not os.path.exists(path):
        return acc
    for line in open(path):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if 200 <= r["status"] < 300 and not r.get("replayed"):
            acc.setdefault(r["key"], []).append(r["ts_ms"])
    for v in acc.values():
        v.sort()
    return acc


def main(argv):
    args = dict(zip(argv[0::2], argv[1::2]))
    work = args["--work"]
    backend = args["--backend"]
    camps = [l.split() for l in open(os.path.join(work, "campaigns.txt"))]
    states = {}
    try:
        for c in json.load(open(os.path.join(work, "final-states.json"))):
            states[c["campaign_id"]] = c
    except (OSError, ValueError) as e:
        print("check: no final states: %s" % e)
    faults = read_faults(os.path.join(work, "faults.log"))
    claims = consumer_claims(work)
    losses = lease_losses(work)

    kills = [(t, tgt) for t, k, tgt, _ in faults if k == "kill9" and tgt.startswith("c")]
    stops = []
    for t, k, tgt, d in faults:
        if k == "stop":
            end = next((t2 for t2, k2, tgt2, d2 in faults
                        if k2 == "cont" and tgt2 == tgt and t2 >= t), 1 << 62)
            stops.append((t, end, tgt))
    hang_ends = [t for t, k, _, _ in faults if k == "sink_hang_end"]

    def explain(cid, prev, cur):
        for f, owner in kills:
            c = claims.get(owner, {}).get(cid)
            if c is not None and c <= f and prev - SLACK_MS <= f <= cur:
                return "kill"
        for s, e, owner in stops:
            c = claims.get(owner, {}).get(cid)
            if c is not None and c <= s and s <= cur and e >= prev - SLACK_MS:
                return "kill"
        for t in losses.get(cid, []):
            if prev - SLACK_MS <= t <= cur:
                return "lease"
        for e in hang_ends:
            if e - HANG_EARLY_MS <= prev <= e + SLACK_MS:
                return "timeout"
        return None

    n_faults = sum(1 for f in faults if f[1] in START_KINDS)
    n_kills = len(kills)
    n_died = sum(1 for f in faults if f[1] == "died")
    sinks = {"email": ("faults/plain-provider", "sink.jsonl", False),
             "sms": ("faults/honouring-provider", "sinkh.jsonl", True)}
    failed = False
    rows = []
    details = []
    for ch, (scenario, log, honour) in sinks.items():
        acc = arrivals(os.path.join(work, log))
        mine = [c for c in camps if c[2] == ch]
        n_rec = lost = dups = expl = expl_to = expl_lease = unexpl = unfinished = 0
        for cid, n, _, due, how, lst in mine:
            n = int(n)
            n_rec += n
            st = states.get(cid)
            if st is None or st["state"] != "DONE" or \
                    st["sent"] + st["rejected"] != n:
                unfinished += 1
                details.append("not finished: %s %s" % (
                    cid, json.dumps(st) if st else "(not in the registry)"))
            prefix = cid + ":"
            for i in range(n):
                if (prefix + "u-%d" % i) not in acc:
                    lost += 1
                    if lost <= 5:
                        details.append("lost: %s%s" % (prefix, "u-%d" % i))
        ids = {c[0] for c in mine}
        for key, times in acc.items():
            cid = key.rsplit(":", 1)[0]
            if cid not in ids:
                details.append("unknown key at the %s sink: %s" % (ch, key))
                unexpl += 1
                continue
            for j in range(1, len(times)):
                dups += 1
                why = None if honour else explain(cid, times[j - 1], times[j])
                if why == "kill":
                    expl += 1
                elif why == "timeout":
                    expl += 1
                    expl_to += 1
                elif why == "lease":
                    expl += 1
                    expl_lease += 1
                else:
                    unexpl += 1
                    if unexpl <= 10:
                        details.append("unexplained duplicate: %s at %d (previous %d)"
                                       % (key, times[j], times[j - 1]))
        if lost or unexpl or unfinished:
            failed = True
        rows.append((scenario, backend, len(mine), n_rec, n_faults, n_kills,
                     lost, dups, expl, expl_to, expl_lease, unexpl, unfinished,
                     n_died))

    # Queues: the work and retry queues empty, the DLQ holds exactly the
    # bad messages published at the start.
    want_dead = int(open(os.path.join(work, "expected-dead.txt")).read())
    try:
        queues = json.load(open(os.path.join(work, "queues.json")))
    except (OSError, ValueError):
        queues = []
        details.append("queues: no snapshot")
        failed = True
    for q in queues:
        m = q.get("messages") or 0
        if q["name"].endswith(".dead"):
            if m != want_dead:
                details.append("queues: %s holds %d, expected the %d bad messages"
                               % (q["name"], m, want_dead))
                failed = True
        elif m:
            details.append("queues: %s still holds %d" % (q["name"], m))
            failed = True
    san = sanitizer_reports(work)
    for s in san:
        details.append("sanitizer/crash: " + s)
    died = [f for f in faults if f[1] == "died"]
    for f in died:
        details.append("consumer died by itself: %s (see logs/consumer-%s.log)"
                       % (f[2], f[2]))
    # Every program still running at the end was stopped with SIGTERM and
    # must have exited 0 (a sanitizer leak report makes it 66).
    exits = []
    try:
        exits = [l.split() for l in open(os.path.join(work, "exits.log"))]
    except OSError:
        pass
    for name, rc in exits:
        if rc != "0" and (name[0] in "cw" or name == "pub"):
            details.append("%s exited %s at SIGTERM (want 0)" % (name, rc))
            failed = True
    if san or died:
        failed = True
    if n_kills < 20:
        details.append("only %d consumer kills (want >= 20)" % n_kills)
        failed = True

    with open(args["--summary"], "a") as out:
        if os.path.getsize(args["--summary"]) == 0:
            out.write("%-26s %-7s %5s %8s %6s %5s %5s %5s %9s %9s %7s %11s %8s %5s\n" % (
                "scenario", "backend", "camps", "recips", "faults", "kills",
                "lost", "dups", "explained", "(timeout)", "(lease)",
                "unexplained", "unfinish", "died"))
        for r in rows:
            out.write("%-26s %-7s %5d %8d %6d %5d %5d %5d %9d %9d %7d %11d %8d %5d\n" % r)
        for d in details:
            out.write("  %s %s\n" % (backend, d))
    for d in details:
        print("check: %s" % d)
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))
