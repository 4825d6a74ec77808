# sendonce-publisher, the real binary, against the real RabbitMQ and both
# registry backends (one executable, the backend on its command line, as in
# registry.cmake). Needs socat (the paused proxy) and Debian's python3-pika
# in /usr/bin/python3 (another service's publish).
if(TARGET sendonce-publisher)
  add_executable(test_publisher integration/test_publisher.c
                                integration/publisher_testutil.c
                                integration/broker_testutil.c
                                integration/registry_testdb.c)
  target_link_libraries(test_publisher PRIVATE sendonce sendonce_testenv
                        PkgConfig::CMOCKA)
  target_include_directories(test_publisher PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(test_publisher PRIVATE
    SENDONCE_PUBLISHER_BIN="$<TARGET_FILE:sendonce-publisher>"
    SENDONCE_PIKA_SCRIPT="${CMAKE_CURRENT_SOURCE_DIR}/integration/pika_publish.py")
  sendonce_target_warnings(test_publisher)
  foreach(backend sqlite pg)
    add_test(NAME publisher_${backend} COMMAND test_publisher ${backend})
    set_tests_properties(publisher_${backend} PROPERTIES
                         LABELS integration TIMEOUT 300)
  endforeach()

  # A broker restart (stop_app/start_app, and kill -9 + scripts/setup) in
  # the middle of publishing 1,000 campaigns. It stops the SHARED broker:
  # label `disruptive`, and it runs only with SENDONCE_TEST_DISRUPTIVE=1
  # (else it exits 77 = skipped). Run it alone:
  #   SENDONCE_TEST_DISRUPTIVE=1 ctest --test-dir build -L disruptive
  add_executable(test_publisher_disruptive
                 integration/test_publisher_disruptive.c
                 integration/publisher_testutil.c
                 integration/broker_testutil.c
                 integration/registry_testdb.c)
  target_link_libraries(test_publisher_disruptive PRIVATE sendonce
                        sendonce_testenv PkgConfig::CMOCKA)
  target_include_directories(test_publisher_disruptive PRIVATE
                             ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(test_publisher_disruptive PRIVATE
    SENDONCE_PUBLISHER_BIN="$<TARGET_FILE:sendonce-publisher>"
    SENDONCE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  sendonce_target_warnings(test_publisher_disruptive)
  foreach(backend sqlite pg)
    add_test(NAME publisher_disruptive_${backend}
             COMMAND test_publisher_disruptive ${backend})
    set_tests_properties(publisher_disruptive_${backend} PROPERTIES
                         LABELS disruptive TIMEOUT 900 SKIP_RETURN_CODE 77
                         RUN_SERIAL TRUE)
    # The gentle variant closes only our daemons' connections (management
    # API) mid-publish: safe beside other tests, so it runs by default.
    add_test(NAME publisher_reconnect_${backend}
             COMMAND test_publisher_disruptive ${backend})
    set_tests_properties(publisher_reconnect_${backend} PROPERTIES
                         LABELS integration TIMEOUT 180
                         ENVIRONMENT SENDONCE_TEST_DISRUPTIVE=dry)
  endforeach()
endif()

# The publisher's pure parts (payload building, the list table): no servers.
if(TARGET sendonce_publisher)
  sendonce_add_test(NAME test_publisher_schedule LABEL unit TIMEOUT 30
                    SOURCES unit/test_publisher_schedule.c
                    LIBS sendonce_publisher)
endif()
