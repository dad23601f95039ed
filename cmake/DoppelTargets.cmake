# Shared helpers: every layer is a static library with the same warnings and precompiled
# headers (libtorch's headers dominate compile time on 2 cores).

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

# The light precompiled header (ATen without torch::nn) and the lists of sources that use it
# or none: loading the full header costs a source that needs little of it more than it saves.
add_library(doppel_pch_aten STATIC ${CMAKE_SOURCE_DIR}/cmake/pch_anchor.cpp)
target_link_libraries(doppel_pch_aten PUBLIC torch)
target_precompile_headers(doppel_pch_aten PUBLIC ${CMAKE_SOURCE_DIR}/cmake/doppel_pch_aten.hpp)
doppel_set_warnings(doppel_pch_aten)
include(${CMAKE_SOURCE_DIR}/cmake/precompiled_header_lists.cmake)

# doppel_use_precompiled_headers(TARGET): the full header for the target's sources, the light one
# for DOPPEL_SOURCES_ATEN_ONLY and none for DOPPEL_SOURCES_WITHOUT_TORCH (call it in the
# target's own directory).
function(doppel_use_precompiled_headers target)
  target_precompile_headers(${target} REUSE_FROM doppel_pch)
  set(light_header ${CMAKE_BINARY_DIR}/CMakeFiles/doppel_pch_aten.dir/cmake_pch.hxx)
  get_target_property(sources ${target} SOURCES)
  set(uses_light_header FALSE)
  foreach(source IN LISTS sources)
    get_filename_component(absolute ${source} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    file(RELATIVE_PATH relative ${CMAKE_SOURCE_DIR} ${absolute})
    if(relative IN_LIST DOPPEL_SOURCES_WITHOUT_TORCH)
      set_source_files_properties(${source} PROPERTIES SKIP_PRECOMPILE_HEADERS ON
                                  SKIP_UNITY_BUILD_INCLUSION ON)
    elseif(relative IN_LIST DOPPEL_SOURCES_ATEN_ONLY AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      # (GCC finds cmake_pch.hxx.gch beside the -include'd header; clang, for the fuzz build,
      # keeps the full header.)
      # -Winvalid-pch (an error with -Werror): an unusable header must not go unnoticed.
      set_source_files_properties(${source} PROPERTIES SKIP_PRECOMPILE_HEADERS ON
          COMPILE_OPTIONS "-Winvalid-pch;-include;${light_header}"
          OBJECT_DEPENDS ${light_header}.gch SKIP_UNITY_BUILD_INCLUSION ON)
      set(uses_light_header TRUE)
    endif()
  endforeach()
  if(uses_light_header)
    add_dependencies(${target} doppel_pch_aten)
  endif()
endfunction()

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
  doppel_use_precompiled_headers(doppel_${name})
  if(name IN_LIST DOPPEL_UNITY_LAYERS)
    set_target_properties(doppel_${name} PROPERTIES UNITY_BUILD ON
                          UNITY_BUILD_BATCH_SIZE ${DOPPEL_UNITY_BATCH})
  endif()
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
  if(DOPPEL_UNITY_TESTS)
    # (CMakeLists.txt says why.) One header for all: a batch amortises loading the full one.
    target_precompile_headers(${name} REUSE_FROM doppel_pch)
    set_target_properties(${name} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${DOPPEL_UNITY_BATCH})
  else()
    doppel_use_precompiled_headers(${name})
  endif()
  doppel_set_warnings(${name})
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]" ${ARG_TEST_PROPERTIES})
endfunction()
