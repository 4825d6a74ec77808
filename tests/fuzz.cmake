# libFuzzer targets, only with -DSENDONCE_FUZZ=ON and clang:
#   CC=clang cmake -S . -B build-fuzz -DSENDONCE_FUZZ=ON
#   cmake --build build-fuzz --target fuzz_msg
#   build-fuzz/tests/fuzz_msg -dict=tests/fuzz/msg.dict \
#       -max_total_time=300 NEW_DIR tests/fuzz/corpus
# (libFuzzer adds what it finds to the first directory: give it a scratch
# one so the seed corpus stays as committed.)
if(SENDONCE_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "SENDONCE_FUZZ needs clang: CC=clang cmake ...")
  endif()
  # The codec's few sources are compiled into the target with the fuzzer
  # instrumentation, rather than linking the library, which is built
  # without -fsanitize=fuzzer (and may carry other sanitizer flags).
  add_executable(fuzz_msg ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_msg.c
    ${PROJECT_SOURCE_DIR}/lib/msg.c ${PROJECT_SOURCE_DIR}/lib/msg_encode.c
    ${PROJECT_SOURCE_DIR}/lib/msg_scan.c ${PROJECT_SOURCE_DIR}/lib/msg_fast.c
    ${PROJECT_SOURCE_DIR}/lib/strictjson.c
    ${PROJECT_SOURCE_DIR}/lib/clock.c ${PROJECT_SOURCE_DIR}/lib/status.c
    ${PROJECT_SOURCE_DIR}/lib/log.c)
  target_include_directories(fuzz_msg PRIVATE ${PROJECT_SOURCE_DIR}/lib)
  target_compile_options(fuzz_msg PRIVATE -g -O1
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer)
  target_link_options(fuzz_msg PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_msg PRIVATE PkgConfig::JSONC)
  sendonce_target_warnings(fuzz_msg)

  # Regression: run every seed and every corpus message once (no fuzzing,
  # nothing written to the source tree).
  file(GLOB FUZZ_MSG_INPUTS CONFIGURE_DEPENDS
       ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/*
       ${CMAKE_CURRENT_SOURCE_DIR}/data/bad-messages/*.json
       ${CMAKE_CURRENT_SOURCE_DIR}/data/good-messages/*.json)
  add_test(NAME fuzz_msg_corpus COMMAND fuzz_msg ${FUZZ_MSG_INPUTS})
  set_tests_properties(fuzz_msg_corpus PROPERTIES LABELS unit TIMEOUT 120)
endif()
