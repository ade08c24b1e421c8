# README.md snippets that are not whole files, compiled (and the module run) by the
# build, so a snippet that drifts from the API breaks the build. Each is cut from the
# README at configure time (a README change reconfigures) and put after a scaffold
# that declares what the snippet takes as given.

include(${CMAKE_CURRENT_LIST_DIR}/readme_text.cmake)
# The README and the guides (docs/*.md), as one text.
file(GLOB troupe_guides ${PROJECT_SOURCE_DIR}/docs/*.md)
list(SORT troupe_guides)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${PROJECT_SOURCE_DIR}/README.md ${troupe_guides})
file(READ ${PROJECT_SOURCE_DIR}/README.md troupe_readme)
foreach(guide ${troupe_guides})
  file(READ ${guide} guide_text)
  string(APPEND troupe_readme "\n${guide_text}")
endforeach()

# The README code from the first `first_line` to the end of its block, into `out`.
function(troupe_readme_snippet out first_line)
  troupe_text_from(rest "${troupe_readme}" "${first_line}" "README.md")
  string(FIND "${rest}" "\n```" end)
  math(EXPR end "${end} + 1")
  string(SUBSTRING "${rest}" 0 ${end} snippet)
  set(${out} "${snippet}" PARENT_SCOPE)
endfunction()

# Writes `content` to `path` only when it changed (no rebuild after every configure).
function(troupe_write_if_changed path content)
  file(WRITE ${path}.new "${content}")
  configure_file(${path}.new ${path} COPYONLY)
endfunction()

set(snippet_dir ${CMAKE_CURRENT_BINARY_DIR}/readme)

# "### Modules": a module registering a provider type from `make_upper_provider`.
troupe_readme_snippet(module_snippet "#include <troupe/runtime/module.hpp>")
troupe_write_if_changed(${snippet_dir}/module_snippet.cpp
"// Generated from README.md (\"### Modules\") by test/readme_snippets.cmake.
#include <cctype>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include \"runtime/provider_registry.hpp\"

namespace {

// What the snippet takes as given: a provider factory; its actor answers a string
// with the string in upper case.
caf::expected<caf::actor> make_upper_provider(const troupe::provider_context& ctx) {
  return ctx.system.spawn([](caf::event_based_actor*) -> caf::behavior {
    return {[](std::string text) {
      for (auto& c : text)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return text;
    }};
  });
}

} // namespace

// The snippet, as README.md shows it:
${module_snippet}")
add_library(troupe_readme_module MODULE ${snippet_dir}/module_snippet.cpp)
target_link_libraries(troupe_readme_module PRIVATE troupe::runtime)
set_target_properties(troupe_readme_module PROPERTIES PREFIX "")
troupe_target_defaults(troupe_readme_module)

# "## Groups": the client handle, used on a node the caller has.
troupe_readme_snippet(group_client_snippet "auto g = troupe::group::group_client::open(")
troupe_write_if_changed(${snippet_dir}/group_client_snippet.cpp
"// Generated from README.md (the group_client snippet under \"## Groups\") by
// test/readme_snippets.cmake. Compiled only: it needs a group at the address it names.
#include \"actors/group/client.hpp\"
#include \"runtime/node.hpp\"

void readme_group_client_snippet(troupe::node& my_node);

void readme_group_client_snippet(troupe::node& my_node) {
// The snippet, as README.md shows it:
${group_client_snippet}}
")
add_library(troupe_readme_group_client OBJECT ${snippet_dir}/group_client_snippet.cpp)
target_link_libraries(troupe_readme_group_client PRIVATE troupe::actors troupe::runtime)
troupe_target_defaults(troupe_readme_group_client)
