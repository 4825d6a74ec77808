# sendonce-consumer end to end: the real binary against the real RabbitMQ,
# both registry backends (one executable, the backend on its command line)
# and sendonce-sink as the provider. The 1,000,000-recipient memory check
# is labelled `long` (minutes under the sanitizers) and runs only with
# SENDONCE_TEST_LONG=1 (else it exits 77 = skipped):
#   SENDONCE_TEST_LONG=1 ctest --test-dir <build> -L long
# The consumer's pure parts (timing table, stats histograms).
if(TARGET sendonce_consumer)
  sendonce_add_test(NAME test_consumer_timing LABEL unit
                    SOURCES unit/test_consumer_timing.c
                    LIBS sendonce_consumer)
  # A worker's mark writer on a real SQLite registry: outcomes queued while
  # its thread is inside a pass go to the campaign's last step when the
  # campaign ends then, not into a commit of their own.
  sendonce_add_test(NAME test_mark_writer_end LABEL integration TIMEOUT 60
                    SOURCES integration/test_mark_writer_end.c
                            integration/registry_testdb.c
                    LIBS sendonce_consumer Threads::Threads)
endif()

# (tests/sink.cmake, included after this file, defines sendonce_sink_client.)
if(TARGET sendonce-consumer)
  add_executable(test_consumer_e2e e2e/test_consumer_e2e.c
                 e2e/consumer_harness.c integration/broker_testutil.c
                 integration/registry_testdb.c)
  target_link_libraries(test_consumer_e2e PRIVATE sendonce sendonce_testenv
                        sendonce_sink_client PkgConfig::CMOCKA)
  target_include_directories(test_consumer_e2e PRIVATE
                             ${PROJECT_SOURCE_DIR}/tests)
  # Peak RSS limit of the million check: 64 MiB as promised. Sanitizer
  # builds carry shadow memory and a 256 MiB quarantine (measured: 367 MiB
  # under ASan), which says nothing about the program: there the check
  # skips (0 = no limit) and only a plain build measures it.
  if(SENDONCE_SANITIZE OR SENDONCE_TSAN)
    set(consumer_rss_kib 0)
  else()
    set(consumer_rss_kib 65536)
  endif()
  target_compile_definitions(test_consumer_e2e PRIVATE
    CONSUMER_BIN="$<TARGET_FILE:sendonce-consumer>"
    SENDONCE_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    CONSUMER_RSS_LIMIT_KIB=${consumer_rss_kib})
  add_dependencies(test_consumer_e2e sendonce-consumer)
  sendonce_target_warnings(test_consumer_e2e)
  foreach(backend sqlite pg)
    add_test(NAME consumer_e2e_${backend}
             COMMAND test_consumer_e2e ${backend})
    set_tests_properties(consumer_e2e_${backend} PROPERTIES
                         LABELS e2e TIMEOUT 600)
  endforeach()
  # The registry writes beside the sending (consumer/mark_writer.h): the
  # window holds while another connection holds the registry's write lock,
  # and after a kill -9 with the window full.
  add_executable(test_consumer_pipeline e2e/test_consumer_pipeline.c
                 e2e/consumer_harness.c integration/broker_testutil.c
                 integration/registry_testdb.c)
  target_link_libraries(test_consumer_pipeline PRIVATE sendonce
                        sendonce_testenv sendonce_sink_client
                        PkgConfig::CMOCKA)
  target_include_directories(test_consumer_pipeline PRIVATE
                             ${PROJECT_SOURCE_DIR}/tests
                             ${PROJECT_SOURCE_DIR}/consumer)
  target_compile_definitions(test_consumer_pipeline PRIVATE
    CONSUMER_BIN="$<TARGET_FILE:sendonce-consumer>"
    SENDONCE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  add_dependencies(test_consumer_pipeline sendonce-consumer)
  sendonce_target_warnings(test_consumer_pipeline)
  foreach(backend sqlite pg)
    add_test(NAME consumer_pipeline_${backend}
             COMMAND test_consumer_pipeline ${backend})
    set_tests_properties(consumer_pipeline_${backend} PROPERTIES
                         LABELS e2e TIMEOUT 400)
  endforeach()
  add_test(NAME consumer_e2e_million COMMAND test_consumer_e2e sqlite long)
  set_tests_properties(consumer_e2e_million PROPERTIES
                       LABELS long TIMEOUT 3600
                       SKIP_RETURN_CODE 77)
endif()
