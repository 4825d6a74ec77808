# What only the PostgreSQL registry has (the shared registry suite covers the
# rest on both backends): reconnect after a killed backend or a server that
# went away, a newer schema refused, unreachable and silent servers,
# statement_timeout, concurrent first openers. Real PostgreSQL; the shared
# server is never restarted (a TCP relay in the test stands in for it).
sendonce_add_test(NAME test_registry_pg_only LABEL integration TIMEOUT 120
                  SOURCES integration/test_registry_pg_only.c)

# Delivery marks on a campaign that already holds many rows: a batch's work
# does not grow with the campaign, and one mixed batch keeps registry.h's
# semantics.
sendonce_add_test(NAME test_registry_pg_marks LABEL integration TIMEOUT 120
                  SOURCES integration/test_registry_pg_marks.c
                          integration/registry_testdb.c)

# The merged steps (a new campaign's claim with its INFLIGHT marks, the
# last outcomes with DONE) one statement each, and the transaction they
# fall back to when rows were left behind.
sendonce_add_test(NAME test_registry_pg_steps LABEL integration TIMEOUT 120
                  SOURCES integration/test_registry_pg_steps.c
                          integration/registry_suite.c
                          integration/registry_testdb.c)
