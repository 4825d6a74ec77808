"""The chaos run's second client: publishes campaign-due messages with
python3-pika the way another service would (persistent, JSON, message_id,
publisher confirms, mandatory), into the private broker.

usage: trigger.py [--raw] [--tries N] FILE...
  each FILE is one message body; --raw publishes it as is (bad messages),
  otherwise it must parse and its campaign_id becomes the message_id.
env:   CHAOS_AMQP_PORT, CHAOS_VHOST, CHAOS_EXCHANGE, CHAOS_USER,
       CHAOS_PASSWORD (never argv).
Prints one line per message: "published FILE" or "failed FILE: why".
The broker may be down (that is the point of the run): each publish is
retried up to --tries times, a second apart; a publish that was confirmed
is never repeated.
"""
import json
import os
import sys
import time

import pika


def connect():
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=int(os.environ["CHAOS_AMQP_PORT"]),
        virtual_host=os.environ["CHAOS_VHOST"],
        credentials=pika.PlainCredentials(os.environ["CHAOS_USER"],
                                          os.environ["CHAOS_PASSWORD"]),
        heartbeat=10,
        blocked_connection_timeout=10,
        socket_timeout=5,
        connection_attempts=1,
        client_properties={"connection_name": "chaos second client"})
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    return conn, ch


def main(argv):
    raw = False
    tries = 20
    files = []
    i = 0
    while i < len(argv):
        if argv[i] == "--raw":
            raw = True
        elif argv[i] == "--tries":
            i += 1
            tries = int(argv[i])
        else:
            files.append(argv[i])
        i += 1
    exchange = os.environ["CHAOS_EXCHANGE"]
    conn = ch = None
    failed = 0
    for path in files:
        body = open(path, "rb").read()
        mid = os.path.basename(path)
        if not raw:
            mid = json.loads(body)["campaign_id"]
        why = "no attempt"
        for _ in range(tries):
            try:
                if ch is None:
                    conn, ch = connect()
                ch.basic_publish(
                    exchange=exchange, routing_key="campaign.due", body=body,
                    properties=pika.BasicProperties(
                        content_type="application/json", delivery_mode=2,
                        message_id=mid, timestamp=int(time.time())),
                    mandatory=True)
                why = None
                break
            except Exception as e:  # broker down, channel closed, nack...
                why = "%s: %s" % (type(e).__name__, e)
                try:
                    if conn is not None:
                        conn.close()
                except Exception:
                    pass
                conn = ch = None
                time.sleep(1)
        if why is None:
            print("published %s" % path, flush=True)
        else:
            failed += 1
            print("failed %s: %s" % (path, why), flush=True)
    try:
        if conn is not None:
            conn.close()
    except Exception:
        pass
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))
