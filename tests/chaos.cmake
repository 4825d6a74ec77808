# Chaos: the whole system (publisher daemon, 3 consumers, 2 watchdogs, the
# sink) under injected faults, on a PRIVATE RabbitMQ node and a PRIVATE
# PostgreSQL cluster that tests/chaos/chaos.sh boots on free loopback ports
# and tears down (the shared servers other tests use are never touched), on
# both registry backends in turn; tests/chaos/check.py counts lost and
# duplicated sends from the sinks' logs. Needs root (the private servers run
# as the rabbitmq and postgres users), socat and stress-ng (scripts/setup).
# (sendonce-sink comes from tests/sink.cmake, included after this file.)
# About 2.5 minutes per backend; scripts/chaos --minutes N runs longer.
if(TARGET sendonce-consumer AND TARGET sendonce-publisher
   AND TARGET sendonce-watchdog)
  # Runs in scripts/test's serial pass (label chaos), alone: it loads the
  # CPU (stress-ng is one of its faults). 90 s of faults per backend gives
  # at least 20 consumer kills on each; scripts/chaos --minutes N runs
  # longer.
  add_test(NAME chaos
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/chaos/chaos.sh
                   --build ${PROJECT_BINARY_DIR} --backend both
                   --fault-seconds 90 --drain-seconds 150 --big 50000)
  set_tests_properties(chaos PROPERTIES LABELS chaos TIMEOUT 720)

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
