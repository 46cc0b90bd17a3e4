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

# The control API over a fake in-memory store (store_stub.c stands in for
# server/store.c until the SQLite backend lands).
tcpota_unit_test(test_api ${CMAKE_CURRENT_LIST_DIR}/test_api.c ${CMAKE_CURRENT_LIST_DIR}/store_stub.c)
target_link_libraries(test_api PRIVATE tcpota_server PkgConfig::JANSSON)
