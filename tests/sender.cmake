# The provider sender: the body template (pure logic) and the HTTP engine
# against real HTTP servers on loopback that the tests start themselves (a
# small recording libmicrohttpd server, and the project's sendonce-sink),
# so all are unit-labelled: no shared servers needed.
sendonce_add_test(NAME test_template LABEL unit
                  SOURCES unit/test_template.c)
# {{vars.*}} read without json-c must render as the json-c path did.
sendonce_add_test(NAME test_template_diff LABEL unit
                  SOURCES unit/test_template_diff.c)
add_library(sendonce_sender_testutil STATIC integration/sender_testutil.c)
target_link_libraries(sendonce_sender_testutil PUBLIC sendonce
                      PkgConfig::CMOCKA)
target_include_directories(sendonce_sender_testutil PUBLIC
                           ${CMAKE_CURRENT_SOURCE_DIR}/integration)
sendonce_target_warnings(sendonce_sender_testutil)
sendonce_add_test(NAME test_sender LABEL unit TIMEOUT 120
                  SOURCES integration/test_sender.c
                  LIBS sendonce_sender_testutil)
sendonce_add_test(NAME test_sender_sink LABEL unit TIMEOUT 120
                  SOURCES integration/test_sender_sink.c
                  LIBS sendonce_sender_testutil sendonce_sink_client)
# Reuse of the sender's curl handles: every request keeps its own key and
# body across retries, timeouts and refused connections (sink's log).
sendonce_add_test(NAME test_sender_reuse LABEL unit TIMEOUT 120
                  SOURCES integration/test_sender_reuse.c
                  LIBS sendonce_sender_testutil sendonce_sink_client)
# The exact bytes of every request (request line, headers in order, body)
# across reused handles and retries, against a raw HTTP/1.1 server.
sendonce_add_test(NAME test_sender_wire LABEL unit TIMEOUT 120
                  SOURCES integration/test_sender_wire.c
                  LIBS sendonce_sender_testutil)
