# The configuration module and the programs' common command line.
sendonce_add_test(NAME test_config LABEL unit TIMEOUT 60
                  SOURCES unit/test_config.c)
target_compile_definitions(test_config PRIVATE
  SENDONCE_TEST_CONFIG_DIR="${PROJECT_SOURCE_DIR}/config")

# The real binaries: bad configs exit 2 with file:line: key: message, and
# --print-config never prints a secret.
if(TARGET sendonce-publisher AND TARGET sendonce-consumer
   AND TARGET sendonce-watchdog)
  add_test(NAME config_exit
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/config_exit.sh
                   $<TARGET_FILE:sendonce-publisher>
                   $<TARGET_FILE:sendonce-consumer>
                   $<TARGET_FILE:sendonce-watchdog>
                   ${CMAKE_CURRENT_SOURCE_DIR}/data/bad-configs
                   ${PROJECT_SOURCE_DIR}/config)
  set_tests_properties(config_exit PROPERTIES LABELS unit TIMEOUT 60)
endif()
