# The HTTP test sink: a provider stand-in that records every request with
# its Idempotency-Key (the oracle for "nobody got it twice"). Built with the
# tests, never installed.
add_executable(sendonce-sink sink/sink.c sink/sink_keys.c sink/sink_mode.c
               sink/sink_state.c sink/sink_wait.c)
target_link_libraries(sendonce-sink PRIVATE PkgConfig::MHD PkgConfig::JSONC
                      Threads::Threads)
sendonce_target_warnings(sendonce-sink)

# A bare curl-multi load loop, to measure the sink's ceiling.
add_executable(sendonce-sink-load sink/sink_load.c)
target_link_libraries(sendonce-sink-load PRIVATE PkgConfig::CURL)
sendonce_target_warnings(sendonce-sink-load)

# sendonce_sink_client: start/stop/drive a sink from any test
# (LIBS sendonce_sink_client). Building it builds the sink.
add_library(sendonce_sink_client STATIC sink/sink_client.c)
target_include_directories(sendonce_sink_client PUBLIC sink)
target_compile_definitions(sendonce_sink_client PRIVATE
  SENDONCE_SINK_BIN="$<TARGET_FILE:sendonce-sink>")
target_link_libraries(sendonce_sink_client PUBLIC PkgConfig::CURL
                      PkgConfig::JSONC)
add_dependencies(sendonce_sink_client sendonce-sink)
sendonce_target_warnings(sendonce_sink_client)

# The sink's own test: it starts the sink itself on loopback, so it needs no
# shared server and is a unit test.
sendonce_add_test(NAME test_sink LABEL unit
                  SOURCES integration/test_sink.c
                  LIBS sendonce_sink_client TIMEOUT 120)
target_compile_definitions(test_sink PRIVATE
  SINK_BIN="$<TARGET_FILE:sendonce-sink>")
