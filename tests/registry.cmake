# The one registry suite, run against both backends: one executable, the
# backend named on its command line. registry_pg needs the PostgreSQL from
# scripts/setup (SENDONCE_REGISTRY_PG_CONNINFO / _PASSWORD in the test env
# file); each run works in its own schema (or SQLite file) and drops it.
# sendonce_add_test() registers one test per executable, so this area
# builds its executable the same way and registers it twice.
add_executable(test_registry integration/test_registry.c
                             integration/test_registry_env.c
                             integration/test_registry_procs.c
                             integration/registry_suite.c
                             integration/registry_testdb.c)
target_link_libraries(test_registry PRIVATE sendonce sendonce_testenv
                      PkgConfig::CMOCKA)
target_include_directories(test_registry PRIVATE ${PROJECT_SOURCE_DIR}/tests)
sendonce_target_warnings(test_registry)
foreach(backend sqlite pg)
  add_test(NAME registry_${backend} COMMAND test_registry ${backend})
  set_tests_properties(registry_${backend} PROPERTIES
                       LABELS integration TIMEOUT 240)
  # The same suite on handles whose publish steps commit asynchronously
  # (registry_options.publish_async_commit, the publisher daemon's): the
  # publish races included, every answer is the same.
  add_test(NAME registry_publish_async_suite_${backend}
           COMMAND test_registry ${backend})
  set_tests_properties(registry_publish_async_suite_${backend} PROPERTIES
                       LABELS integration TIMEOUT 240
                       ENVIRONMENT SENDONCE_TEST_PUBLISH_ASYNC=1)
endforeach()

# What publish_async_commit changes: no sync for the publish lease and the
# PUBLISHED mark (SQLite: a counting VFS; PostgreSQL: the
# synchronous_commit each update ran under, recorded by a trigger), and
# nothing else.
add_executable(test_registry_publish_async
               integration/test_registry_publish_async.c
               integration/registry_testdb.c)
target_link_libraries(test_registry_publish_async PRIVATE sendonce
                      sendonce_testenv PkgConfig::CMOCKA PkgConfig::SQLITE3)
target_include_directories(test_registry_publish_async PRIVATE
                           ${PROJECT_SOURCE_DIR}/tests)
sendonce_target_warnings(test_registry_publish_async)
foreach(backend sqlite pg)
  add_test(NAME registry_publish_async_${backend}
           COMMAND test_registry_publish_async ${backend})
  set_tests_properties(registry_publish_async_${backend} PROPERTIES
                       LABELS integration TIMEOUT 120)
endforeach()

# The same suite's cases of delivery marks and the merged steps
# (register_claim_mark, mark_finish), an executable of their own so that
# ctest runs them beside the rest; registered the same way, once per
# backend.
add_executable(test_registry_marks integration/test_registry_marks.c
                                   integration/registry_suite.c
                                   integration/registry_testdb.c)
target_link_libraries(test_registry_marks PRIVATE sendonce sendonce_testenv
                      PkgConfig::CMOCKA)
target_include_directories(test_registry_marks PRIVATE
                           ${PROJECT_SOURCE_DIR}/tests)
sendonce_target_warnings(test_registry_marks)
foreach(backend sqlite pg)
  add_test(NAME registry_marks_${backend}
           COMMAND test_registry_marks ${backend})
  set_tests_properties(registry_marks_${backend} PROPERTIES
                       LABELS integration TIMEOUT 240)
endforeach()

# Group commit of the SQLite backend: many threads of one process (each
# with its own handle) on one real database file, plus another process.
sendonce_add_test(NAME test_registry_group LABEL integration TIMEOUT 240
                  SOURCES integration/test_registry_group.c
                          integration/registry_testdb.c
                  LIBS Threads::Threads)

# The group commit's delay (registry.commit_delay_us): steps of handles
# that queued lately gathered into one COMMIT; a lone handle never waits.
sendonce_add_test(NAME test_registry_delay LABEL integration TIMEOUT 120
                  SOURCES integration/test_registry_delay.c
                          integration/registry_testdb.c
                  LIBS Threads::Threads)

# The SQLite writer's WAL file written ahead of its frames: longer than
# its frames after a commit, a copy with the zero tail recovers, the
# automatic checkpoint still runs.
sendonce_add_test(NAME test_registry_wal LABEL integration TIMEOUT 120
                  SOURCES integration/test_registry_wal.c
                          integration/registry_testdb.c)

# SQLite schema versions: a version-1 database migrated to 2 (tables
# rebuilt WITHOUT ROWID) with its rows intact and usable, a fresh one at 2,
# a newer one refused, a migration that fails its foreign-key check
# rolled back.
sendonce_add_test(NAME test_registry_sqlite_schema LABEL integration
                  TIMEOUT 120
                  SOURCES integration/test_registry_sqlite_schema.c
                          integration/registry_testdb.c)

# SQLite marks written several rows per statement: random calls of
# registry_mark and registry_mark_pending checked against a model of
# registry.h's semantics (pending answers, rows, counters).
sendonce_add_test(NAME test_registry_sqlite_marks LABEL integration
                  TIMEOUT 120
                  SOURCES integration/test_registry_sqlite_marks.c
                          integration/registry_testdb.c)
