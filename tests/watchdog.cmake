# The watchdog: its decision table (unit, pure) and the watchdog against the
# real RabbitMQ and both registry backends (integration; the backend is
# named on the command line, as in registry.cmake).
if(TARGET sendonce_watchdog)
  sendonce_add_test(NAME test_verdict LABEL unit TIMEOUT 30
                    SOURCES unit/test_verdict.c
                    LIBS sendonce_watchdog)
endif()

# The watchdog against the real broker, without consumers, on both
# registry backends; it runs the sendonce-watchdog (and, when built,
# sendonce-publisher) binaries for the CLI cases.
if(TARGET sendonce_watchdog)
  add_executable(test_watchdog integration/test_watchdog.c
                               integration/watchdog_testutil.c
                               integration/registry_testdb.c
                               integration/broker_testutil.c)
  target_link_libraries(test_watchdog PRIVATE sendonce_watchdog sendonce
                        sendonce_testenv PkgConfig::CMOCKA)
  target_include_directories(test_watchdog PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(test_watchdog PRIVATE
    SENDONCE_WATCHDOG_BIN="$<TARGET_FILE:sendonce-watchdog>"
    SENDONCE_PUBLISHER_BIN="$<TARGET_FILE:sendonce-publisher>")
  add_dependencies(test_watchdog sendonce-watchdog sendonce-publisher)
  sendonce_target_warnings(test_watchdog)
  foreach(backend sqlite pg)
    add_test(NAME watchdog_${backend} COMMAND test_watchdog ${backend})
    set_tests_properties(watchdog_${backend} PROPERTIES
                         LABELS integration TIMEOUT 240)
  endforeach()
endif()

# End to end with real consumers and the sink, on both backends: the
# incident replay (a campaign of over 60 s at the sink, two watchdogs at 1 s
# / grace 5 s), the SIGSTOPped consumer's takeover, and a campaign queued
# behind a busy consumer + a purged trigger + a poison replayed.
if(TARGET sendonce_watchdog AND TARGET sendonce-consumer
   AND TARGET sendonce_sink_client)
  add_executable(test_watchdog_e2e e2e/test_watchdog_e2e.c
                 e2e/consumer_harness.c integration/broker_testutil.c
                 integration/registry_testdb.c)
  target_link_libraries(test_watchdog_e2e PRIVATE sendonce sendonce_testenv
                        sendonce_sink_client PkgConfig::CMOCKA)
  target_include_directories(test_watchdog_e2e PRIVATE
                             ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(test_watchdog_e2e PRIVATE
    CONSUMER_BIN="$<TARGET_FILE:sendonce-consumer>"
    SENDONCE_WATCHDOG_BIN="$<TARGET_FILE:sendonce-watchdog>")
  add_dependencies(test_watchdog_e2e sendonce-consumer sendonce-watchdog)
  sendonce_target_warnings(test_watchdog_e2e)
  foreach(backend sqlite pg)
    add_test(NAME incident_replay_${backend}
             COMMAND test_watchdog_e2e ${backend} incident_replay)
    add_test(NAME watchdog_sigstop_takeover_${backend}
             COMMAND test_watchdog_e2e ${backend} sigstop_takeover)
    add_test(NAME watchdog_queued_lost_poison_${backend}
             COMMAND test_watchdog_e2e ${backend} queued_lost_poison)
    set_tests_properties(incident_replay_${backend}
                         watchdog_sigstop_takeover_${backend}
                         watchdog_queued_lost_poison_${backend} PROPERTIES
                         LABELS e2e TIMEOUT 400)
  endforeach()
endif()
