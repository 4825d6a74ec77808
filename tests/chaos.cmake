# Chaos: the whole system (publisher daemon, 3 consumers, 2 watchdogs, the
# sink) under injected faults, on a PRIVATE RabbitMQ node and a PRIVATE
# PostgreSQL cluster that tests/chaos/chaos.sh boots on free loopback ports
# and tears down (the shared servers other tests use are never touched), on
# both registry backends in turn; tests/chaos/check.py counts lost and
# duplicated sends from the sinks' logs. Needs root (the private servers run
# as the rabbitmq and postgres users), socat and stress-ng (scripts/setup).
# (sendonce-sink comes from tests/sink.cmake, included after this file.)
# About 3.5 minutes per backend; scripts/chaos --minutes N runs longer.
if(TARGET sendonce-consumer AND TARGET sendonce-publisher
   AND TARGET sendonce-watchdog)
  # PENDING: label chaos-pending, opt-in (exit 77 = skipped otherwise):
  #   SENDONCE_TEST_CHAOS=1 ctest --test-dir <build> -L chaos
  # It finds two broken promises that belong to the consumer (a consumer
  # exits when a proxied broker hangs up during login; a release on a
  # provider give-up drops in-flight outcomes, so accepted sends are sent
  # again): once they are fixed and the run passes 3 times in a row, drop
  # --opt-in and set LABELS chaos so scripts/test runs it.
  add_test(NAME chaos
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/chaos/chaos.sh
                   --opt-in SENDONCE_TEST_CHAOS
                   --build ${PROJECT_BINARY_DIR} --backend both
                   --fault-seconds 125 --drain-seconds 150 --big 50000)
  set_tests_properties(chaos PROPERTIES LABELS "chaos;chaos-pending"
                       TIMEOUT 720 SKIP_RETURN_CODE 77)

  # Every bad config stops each daemon's `run` with exit 2 and its message,
  # no sanitizer report (tests/data/bad-configs; config_exit covers
  # --print-config).
  add_test(NAME bad_configs_run
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/chaos/bad_configs_run.sh
                   $<TARGET_FILE:sendonce-publisher>
                   $<TARGET_FILE:sendonce-consumer>
                   $<TARGET_FILE:sendonce-watchdog>
                   ${CMAKE_CURRENT_SOURCE_DIR}/data/bad-configs)
  set_tests_properties(bad_configs_run PROPERTIES LABELS unit TIMEOUT 120)
endif()
