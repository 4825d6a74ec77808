# One option per sanitizer set; applied globally so the tests, the library
# and the programs are instrumented alike.
if(SENDONCE_SANITIZE AND SENDONCE_TSAN)
  message(FATAL_ERROR "SENDONCE_SANITIZE and SENDONCE_TSAN are exclusive")
endif()
if(SENDONCE_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
if(SENDONCE_TSAN)
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()
