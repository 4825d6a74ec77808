# Integration smoke test: the RabbitMQ and PostgreSQL from scripts/setup are
# up and usable (quorum queue + confirms + manual ack; registry role login).
sendonce_add_test(NAME test_smoke LABEL integration TIMEOUT 60
                  SOURCES integration/test_smoke.c)
