# The provider sender: the body template (pure logic) and the HTTP engine
# against a real HTTP server on loopback that the test starts itself
# (libmicrohttpd), so both are unit-labelled: no shared servers needed.
sendonce_add_test(NAME test_template LABEL unit
                  SOURCES unit/test_template.c)
sendonce_add_test(NAME test_sender LABEL unit TIMEOUT 120
                  SOURCES integration/test_sender.c)
