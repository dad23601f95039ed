# Shared helpers: every layer is a static library with the same warnings and one
# precompiled header (libtorch's headers dominate compile time on 2 cores).

function(doppel_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(DOPPEL_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# The precompiled header target; everything that includes libtorch reuses it.
add_library(doppel_pch STATIC ${CMAKE_SOURCE_DIR}/cmake/pch_anchor.cpp)
target_link_libraries(doppel_pch PUBLIC torch)
target_precompile_headers(doppel_pch PUBLIC ${CMAKE_SOURCE_DIR}/cmake/doppel_pch.hpp)
doppel_set_warnings(doppel_pch)

# doppel_add_layer(NAME SOURCES... DEPENDS...)
function(doppel_add_layer name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS" ${ARGN})
  if(NOT ARG_SOURCES)
    return()  # a layer folder that has no code yet
  endif()
  add_library(doppel_${name} STATIC ${ARG_SOURCES})
  target_include_directories(doppel_${name} PUBLIC ${CMAKE_SOURCE_DIR}/include
                                            PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(doppel_${name} PUBLIC ${ARG_DEPENDS} torch)
  target_precompile_headers(doppel_${name} REUSE_FROM doppel_pch)
  doppel_set_warnings(doppel_${name})
endfunction()

# doppel_add_test(NAME SOURCES... DEPENDS... [TEST_PROPERTIES...]): one GoogleTest executable
# per layer; TEST_PROPERTIES are extra CTest properties for every discovered test.
function(doppel_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS;TEST_PROPERTIES" ${ARGN})
  if(NOT ARG_SOURCES)
    return()
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPENDS} GTest::gtest GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  target_compile_definitions(${name} PRIVATE
      DOPPEL_DEFAULT_SHARED_DIR="${DOPPEL_SHARED_DIR}"
      DOPPEL_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  target_precompile_headers(${name} REUSE_FROM doppel_pch)
  doppel_set_warnings(${name})
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]" ${ARG_TEST_PROPERTIES})
endfunction()
