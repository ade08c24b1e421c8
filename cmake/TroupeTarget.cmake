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

# troupe_program_allocator(<target>)
# Links mimalloc into a program, so it replaces malloc and operator new process-wide
# (it comes before libc in the lookup order). Not under the sanitizers, which bring
# their own allocator.
function(troupe_program_allocator target)
  if(NOT TROUPE_SANITIZE)
    target_link_libraries(${target} PRIVATE mimalloc)
  endif()
endfunction()

# troupe_capnp_library(<target> <schema.capnp>...)
# Compiles Cap'n Proto schemas into a static library. Generated code goes to
# ${CMAKE_BINARY_DIR}/gen/<path relative to the project root>, so a schema at
# test/schema/x.capnp is included as "test/schema/x.capnp.h".
function(troupe_capnp_library target)
  set(CAPNPC_SRC_PREFIX ${PROJECT_SOURCE_DIR})
  set(CAPNPC_OUTPUT_DIR ${CMAKE_BINARY_DIR}/gen)
  file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/gen/${rel})
  capnp_generate_cpp(sources headers ${ARGN})
  add_library(${target} STATIC ${sources})
  # Generated code is not ours to warn about. Installed, it sits beside the public
  # headers (include/troupe/<path>).
  target_include_directories(${target} SYSTEM PUBLIC
    $<BUILD_INTERFACE:${CMAKE_BINARY_DIR}/gen> $<INSTALL_INTERFACE:include/troupe>)
  target_link_libraries(${target} PUBLIC CapnProto::capnp)
  target_compile_features(${target} PUBLIC cxx_std_17)
endfunction()

# troupe_public_library(<target> <export name>)
# A library applications build against: headers included from the repository root
# ("runtime/node.hpp") inside Troupe, and as <troupe/runtime/node.hpp> by applications,
# both in the build tree and once installed (include/troupe/<folder>/...).
function(troupe_public_library target export_name)
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}> $<BUILD_INTERFACE:${CMAKE_BINARY_DIR}/include>
    $<INSTALL_INTERFACE:include> $<INSTALL_INTERFACE:include/troupe>)
  # 0.x: every minor version may break the ABI, so the SONAME carries it.
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name}
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
endfunction()
