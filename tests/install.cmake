# `cmake --install` into staging directories (DESTDIR): programs, the
# example config (/etc/sendonce with --prefix /usr) and the systemd units.
if(TARGET sendonce-publisher AND TARGET sendonce-consumer
   AND TARGET sendonce-watchdog)
  add_test(NAME install_check
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/install_check.sh
                   ${CMAKE_COMMAND} ${CMAKE_BINARY_DIR} $<CONFIG>
                   ${PROJECT_SOURCE_DIR})
  set_tests_properties(install_check PROPERTIES LABELS unit TIMEOUT 120)
endif()
