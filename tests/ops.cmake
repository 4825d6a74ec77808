# Operations end to end (issue 9): the daemons' /metrics checked against the
# sink, the events on <prefix>.events, and SIGHUP reloads, with the real
# broker, the real registry backends and sendonce-sink as the provider.
# (sendonce_sink_client is defined by sink.cmake, included after this file.)
if(TARGET sendonce-consumer AND TARGET sendonce-publisher
   AND TARGET sendonce-watchdog)
  add_executable(test_ops_e2e e2e/test_ops_e2e.c e2e/ops_testutil.c
                 e2e/consumer_harness.c
                 integration/broker_testutil.c integration/registry_testdb.c)
  target_link_libraries(test_ops_e2e PRIVATE sendonce sendonce_testenv
                        sendonce_sink_client PkgConfig::RABBITMQ
                        PkgConfig::CURL PkgConfig::JSONC PkgConfig::CMOCKA m)
  target_include_directories(test_ops_e2e PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(test_ops_e2e PRIVATE
    CONSUMER_BIN="$<TARGET_FILE:sendonce-consumer>"
    SENDONCE_PUBLISHER_BIN="$<TARGET_FILE:sendonce-publisher>"
    SENDONCE_WATCHDOG_BIN="$<TARGET_FILE:sendonce-watchdog>")
  add_dependencies(test_ops_e2e sendonce-consumer sendonce-publisher
                   sendonce-watchdog)
  sendonce_target_warnings(test_ops_e2e)
  foreach(backend sqlite pg)
    add_test(NAME ops_e2e_${backend} COMMAND test_ops_e2e ${backend})
    set_tests_properties(ops_e2e_${backend} PROPERTIES
                         LABELS e2e TIMEOUT 300)
  endforeach()
endif()
