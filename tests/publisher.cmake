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
endif()
