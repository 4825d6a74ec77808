# SIGHUP reload: safe settings applied, unsafe ones kept and reported, a bad
# file keeping the old config whole.
sendonce_add_test(NAME test_config_reload LABEL unit TIMEOUT 60
                  SOURCES unit/test_config_reload.c)
