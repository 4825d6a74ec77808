# The logger: level filter, key=value and JSON lines, whole lines across
# threads (stderr captured into a temporary file).
sendonce_add_test(NAME test_log LABEL unit TIMEOUT 60
                  SOURCES unit/test_log.c)
