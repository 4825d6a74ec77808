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
