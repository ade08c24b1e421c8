# Fails when a code block of the README or a guide (docs/*.md) drifts from the example
# file the build compiles and the tests run. Each example appears in them as one
# ```cpp block (the one with the file's "// 1. " marker line) that is the file whole,
# but for the file's head:
# the file must end with the block, and what comes before it may only be comments,
# #include lines, using declarations and blank lines. A line more, less or different
# in the block fails.
cmake_minimum_required(VERSION 3.16)
include(${CMAKE_CURRENT_LIST_DIR}/readme_text.cmake)
file(READ ${SOURCE_DIR}/README.md readme)
file(GLOB guides ${SOURCE_DIR}/docs/*.md)
list(SORT guides)
foreach(guide ${guides})
  file(READ ${guide} text)
  string(APPEND readme "\n${text}")
endforeach()

# The README's ```cpp blocks, without their fences: block_0 ... block_<n-1>.
set(rest "${readme}")
set(block_count 0)
while(TRUE)
  string(FIND "${rest}" "```cpp\n" open)
  if(open EQUAL -1)
    break()
  endif()
  math(EXPR open "${open} + 7")
  string(SUBSTRING "${rest}" ${open} -1 rest)
  string(FIND "${rest}" "\n```" close)
  if(close EQUAL -1)
    message(FATAL_ERROR "README.md: a ```cpp block is never closed")
  endif()
  math(EXPR close "${close} + 1")
  string(SUBSTRING "${rest}" 0 ${close} block_${block_count})
  string(SUBSTRING "${rest}" ${close} -1 rest)
  math(EXPR block_count "${block_count} + 1")
endwhile()

foreach(example first_actor.cpp remote_echo.cpp typed_protocol.cpp rdma_copy.cpp
                word_count_op.cpp supervised_worker.cpp checksum_jobs.cpp)
  file(READ ${SOURCE_DIR}/apps/examples/${example} text)
  troupe_text_from(from_marker "${text}" "// 1. " "apps/examples/${example}")
  string(FIND "${from_marker}" "\n" marker_end)
  string(SUBSTRING "${from_marker}" 0 ${marker_end} marker)
  # The block with the marker line.
  set(found "")
  math(EXPR last "${block_count} - 1")
  foreach(i RANGE ${last})
    string(FIND "${block_${i}}" "${marker}\n" at)
    if(NOT at EQUAL -1)
      set(found ${i})
      break()
    endif()
  endforeach()
  if(found STREQUAL "")
    message(FATAL_ERROR "README.md has no ```cpp block with apps/examples/${example}'s "
                        "line '${marker}'")
  endif()
  set(block "${block_${found}}")
  string(LENGTH "${text}" text_length)
  string(LENGTH "${block}" block_length)
  math(EXPR head_length "${text_length} - ${block_length}")
  set(tail "")
  set(head "")
  if(head_length GREATER_EQUAL 0)
    string(SUBSTRING "${text}" ${head_length} -1 tail)
    string(SUBSTRING "${text}" 0 ${head_length} head)
  endif()
  # The head, without its comments, includes, using declarations and line ends.
  string(REGEX REPLACE "(//[^\n]*|#include [^\n]*|using [^\n]*;)\n" "" head_rest
                       "${head}")
  string(REPLACE "\n" "" head_rest "${head_rest}")
  if(NOT tail STREQUAL block OR NOT head_rest STREQUAL "")
    file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/readme_${example} "${block}")
    message(FATAL_ERROR "README.md's block for apps/examples/${example} is not the "
                        "file whole (but for its comments and includes); compare "
                        "${CMAKE_CURRENT_BINARY_DIR}/readme_${example} with the file")
  endif()
endforeach()
