# The AMQP session and topology against the real RabbitMQ (scripts/setup).
# test_broker_faults needs socat and openssl (the paused proxy, the TLS
# front) and rabbitmqctl is used to close our connection server-side.
sendonce_add_test(NAME test_broker LABEL integration TIMEOUT 180
                  SOURCES integration/test_broker.c
                          integration/broker_testutil.c)
sendonce_add_test(NAME test_broker_faults LABEL integration TIMEOUT 180
                  SOURCES integration/test_broker_faults.c
                          integration/broker_testutil.c)
sendonce_add_test(NAME test_broker_events LABEL integration TIMEOUT 60
                  SOURCES integration/test_broker_events.c
                          integration/broker_testutil.c)
sendonce_add_test(NAME test_topology LABEL unit TIMEOUT 30
                  SOURCES unit/test_topology.c)
