# Unit tests of the server's modules that need no sockets (server/).
tcpota_unit_test(test_server_auth ${CMAKE_CURRENT_LIST_DIR}/test_server_auth.c
                 ${PROJECT_SOURCE_DIR}/server/auth.c)
target_include_directories(test_server_auth PRIVATE ${PROJECT_SOURCE_DIR}/server)
target_link_libraries(test_server_auth PRIVATE tcpota_core PkgConfig::SODIUM)

tcpota_unit_test(test_server_image ${CMAKE_CURRENT_LIST_DIR}/test_server_image.c)
target_link_libraries(test_server_image PRIVATE tcpota_server)

tcpota_unit_test(test_server_unauth ${CMAKE_CURRENT_LIST_DIR}/test_server_unauth.c
                 ${PROJECT_SOURCE_DIR}/server/unauth.c)
target_include_directories(test_server_unauth PRIVATE ${PROJECT_SOURCE_DIR}/server)

# The control API over a fake in-memory store backend (in the test).
tcpota_unit_test(test_api ${CMAKE_CURRENT_LIST_DIR}/test_api.c)
target_link_libraries(test_api PRIVATE tcpota_server PkgConfig::JANSSON)

# The fleet stores, through their asynchronous API on a real loop: the tests
# every backend passes (store_suite.c), then each one's own.
tcpota_unit_test(test_store_sqlite ${CMAKE_CURRENT_LIST_DIR}/test_store_sqlite.c
                 ${CMAKE_CURRENT_LIST_DIR}/store_suite.c)
target_link_libraries(test_store_sqlite PRIVATE tcpota_server PkgConfig::SQLITE)
# PostgreSQL: a cluster of the test's own (with_pg.sh starts and stops it).
add_executable(test_store_pg ${CMAKE_CURRENT_LIST_DIR}/test_store_pg.c
               ${CMAKE_CURRENT_LIST_DIR}/store_suite.c)
target_link_libraries(test_store_pg PRIVATE tcpota_store_pg PkgConfig::LIBPQ PkgConfig::SODIUM
                      PkgConfig::CMOCKA)
target_compile_definitions(test_store_pg PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
add_test(NAME test_store_pg COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/with_pg.sh
         $<TARGET_FILE:test_store_pg>)
set_tests_properties(test_store_pg PROPERTIES LABELS unit TIMEOUT 120)
# Its timings on a million devices, run by hand (not a test; see the file).
add_executable(bench_store_sqlite EXCLUDE_FROM_ALL ${CMAKE_CURRENT_LIST_DIR}/bench_store_sqlite.c)
target_link_libraries(bench_store_sqlite PRIVATE tcpota_server PkgConfig::SQLITE)
target_compile_definitions(bench_store_sqlite PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)

# The store thread and its completions, with a backend of the test's own.
tcpota_unit_test(test_store_worker ${CMAKE_CURRENT_LIST_DIR}/test_store_worker.c)
target_link_libraries(test_store_worker PRIVATE tcpota_server)
target_include_directories(test_store_worker PRIVATE ${PROJECT_SOURCE_DIR}/server)

# Fleet mode's counters and their Prometheus text.
tcpota_unit_test(test_metrics ${CMAKE_CURRENT_LIST_DIR}/test_metrics.c)
target_link_libraries(test_metrics PRIVATE tcpota_server)

# Range and If-Range of the HTTP downloads (pure).
tcpota_unit_test(test_http_range ${CMAKE_CURRENT_LIST_DIR}/test_http_range.c
                 ${PROJECT_SOURCE_DIR}/server/http_range.c)
target_include_directories(test_http_range PRIVATE ${PROJECT_SOURCE_DIR}/server)
tcpota_unit_test(test_http_host ${CMAKE_CURRENT_LIST_DIR}/test_http_host.c
                 ${PROJECT_SOURCE_DIR}/server/http_host.c)
target_include_directories(test_http_host PRIVATE ${PROJECT_SOURCE_DIR}/server)

# An image's first bytes against its version and model (server/esp_image.c).
tcpota_unit_test(test_esp_image ${CMAKE_CURRENT_LIST_DIR}/test_esp_image.c
                 ${PROJECT_SOURCE_DIR}/server/esp_image.c)
target_include_directories(test_esp_image PRIVATE ${PROJECT_SOURCE_DIR}/server)
target_link_libraries(test_esp_image PRIVATE tcpota_core)

# The PROXY protocol header a trusted balancer sends (server/proxy_proto.c).
tcpota_unit_test(test_proxy_proto ${CMAKE_CURRENT_LIST_DIR}/test_proxy_proto.c
                 ${PROJECT_SOURCE_DIR}/server/proxy_proto.c)
target_include_directories(test_proxy_proto PRIVATE ${PROJECT_SOURCE_DIR}/server)

# Deadlines against a late loop (a clock the test sets) and PEM marks across reads.
tcpota_unit_test(test_server_deadline ${CMAKE_CURRENT_LIST_DIR}/test_server_deadline.c)
target_link_libraries(test_server_deadline PRIVATE tcpota_server)
