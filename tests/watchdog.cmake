# The watchdog: its decision table (unit, pure) and the watchdog against the
# real RabbitMQ and both registry backends (integration; the backend is
# named on the command line, as in registry.cmake).
if(TARGET sendonce_watchdog)
  sendonce_add_test(NAME test_verdict LABEL unit TIMEOUT 30
                    SOURCES unit/test_verdict.c
                    LIBS sendonce_watchdog)
endif()
