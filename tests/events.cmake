# lib/events.c: the event body other services parse (docs/events.md).
sendonce_add_test(NAME test_events LABEL unit TIMEOUT 60
                  SOURCES unit/test_events.c)
