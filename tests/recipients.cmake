# The streaming recipients reader: file:// and http:// (from a sink started
# by the test on loopback), bad lines, fetch failures, bounded memory.
sendonce_add_test(NAME test_recipients LABEL unit
                  SOURCES unit/test_recipients.c
                  LIBS sendonce_sink_client TIMEOUT 120)
