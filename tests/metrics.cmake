# The Prometheus registry and its /metrics endpoint (loopback only).
sendonce_add_test(NAME test_metrics LABEL unit TIMEOUT 120
                  SOURCES unit/test_metrics.c)
