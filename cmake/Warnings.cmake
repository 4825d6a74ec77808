# Strict warnings for our own code. Each flag is here for a reason:
#  -Wshadow            a shadowed name hides a bug more often than not
#  -Wconversion        silent narrowing of sizes and counters (sign
#                      conversion is off: it fires on every size_t/int mix)
#  -Wstrict-prototypes -Wmissing-prototypes  every non-static function has
#                      a prototype in its header; everything else is static
#  -Wformat=2          log macros are printf-checked
#  -Wwrite-strings     string literals are const
#  -Wimplicit-fallthrough  a fall-through is said, never implied
set(SENDONCE_WARNINGS
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
    -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wwrite-strings
    -Wimplicit-fallthrough)
if(SENDONCE_WERROR)
  list(APPEND SENDONCE_WARNINGS -Werror)
endif()

# sendonce_target_warnings(target): apply the project warnings to a target.
function(sendonce_target_warnings target)
  target_compile_options(${target} PRIVATE ${SENDONCE_WARNINGS})
endfunction()
