# Unit tests of the campaign-due codec and the clock (no servers).
sendonce_add_test(NAME test_clock LABEL unit TIMEOUT 60
                  SOURCES unit/test_clock.c)
sendonce_add_test(NAME test_msg LABEL unit TIMEOUT 120
                  SOURCES unit/test_msg.c)
# The bad/good message corpora are read from the source tree.
target_compile_definitions(test_msg PRIVATE
  SENDONCE_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data")
# The recipient line fast path against the json-c path.
sendonce_add_test(NAME test_msg_scan LABEL unit TIMEOUT 60
                  SOURCES unit/test_msg_scan.c)
