# A CTest fixture that runs one PostgreSQL server for the whole test run (see
# postgres_server.sh). Tests that need it pass DOPPEL_POSTGRES_TEST_PROPERTIES to
# doppel_add_test; run directly (outside CTest) they start a private server instead.

# Unix socket paths are limited to ~100 bytes, so the folder lives in /tmp, named after
# this build tree so that several build trees can run their tests at the same time.
string(MD5 doppel_build_hash "${CMAKE_BINARY_DIR}")
string(SUBSTRING "${doppel_build_hash}" 0 12 doppel_build_hash)
set(DOPPEL_POSTGRES_TEST_DIR "/tmp/doppel-pg-${doppel_build_hash}")
set(DOPPEL_POSTGRES_TEST_PROPERTIES
    FIXTURES_REQUIRED doppel_postgres
    ENVIRONMENT DOPPEL_TEST_POSTGRES_DIR=${DOPPEL_POSTGRES_TEST_DIR})

get_property(doppel_postgres_fixture_defined GLOBAL PROPERTY DOPPEL_POSTGRES_FIXTURE_DEFINED)
if(NOT doppel_postgres_fixture_defined)
  set_property(GLOBAL PROPERTY DOPPEL_POSTGRES_FIXTURE_DEFINED TRUE)
  set(script ${CMAKE_SOURCE_DIR}/tests/support/postgres_server.sh)
  add_test(NAME doppel_postgres_start COMMAND ${script} start ${DOPPEL_POSTGRES_TEST_DIR})
  add_test(NAME doppel_postgres_stop COMMAND ${script} stop ${DOPPEL_POSTGRES_TEST_DIR})
  set_tests_properties(doppel_postgres_start PROPERTIES FIXTURES_SETUP doppel_postgres)
  set_tests_properties(doppel_postgres_stop PROPERTIES FIXTURES_CLEANUP doppel_postgres)
endif()
