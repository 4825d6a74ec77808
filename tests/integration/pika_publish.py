"""Publish one campaign-due message to sendonce with python3-pika, the way
docs/publishing.md tells other services to: persistent, JSON, message_id =
campaign id, our two headers, publisher confirms, mandatory routing.

usage: pika_publish.py BODY_FILE
env:   SENDONCE_BROKER_USER, SENDONCE_BROKER_PASSWORD (never argv),
       SENDONCE_AMQP_HOST (127.0.0.1), SENDONCE_AMQP_VHOST (sendonce),
       SENDONCE_EXCHANGE (sendonce: the topology prefix)
"""
import json
import os
import sys
import time

import pika

body = open(sys.argv[1], "rb").read()
campaign_id = json.loads(body)["campaign_id"]

params = pika.ConnectionParameters(
    host=os.environ.get("SENDONCE_AMQP_HOST", "127.0.0.1"),
    virtual_host=os.environ.get("SENDONCE_AMQP_VHOST", "sendonce"),
    credentials=pika.PlainCredentials(os.environ["SENDONCE_BROKER_USER"],
                                      os.environ["SENDONCE_BROKER_PASSWORD"]),
    heartbeat=30,
    blocked_connection_timeout=30)
conn = pika.BlockingConnection(params)
channel = conn.channel()
channel.confirm_delivery()  # basic_publish now raises unless the broker acks
channel.basic_publish(
    exchange=os.environ.get("SENDONCE_EXCHANGE", "sendonce"),
    routing_key="campaign.due",
    body=body,
    properties=pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,  # persistent
        message_id=campaign_id,
        timestamp=int(time.time()),
        headers={"x-sendonce-campaign": campaign_id,
                 "x-sendonce-attempt": 0}),
    mandatory=True)  # unroutable raises pika.exceptions.UnroutableError
conn.close()
print("published", campaign_id)
