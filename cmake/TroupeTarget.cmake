# Warning and sanitizer flags for Troupe's own targets (never for third-party code).
set(TROUPE_WARNINGS -Wall -Wextra -Werror)

function(troupe_target_defaults target)
  target_compile_options(${target} PRIVATE ${TROUPE_WARNINGS})
  target_compile_features(${target} PUBLIC cxx_std_17)
  if(TROUPE_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
endfunction()
