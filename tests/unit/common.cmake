# Unit tests of the code shared by the host device and the ESP-IDF task
# (ports/common): the connection loop's policy on a fake clock.
tcpota_unit_test(test_runner ${CMAKE_CURRENT_LIST_DIR}/test_runner.c)
target_link_libraries(test_runner PRIVATE tcpota_client)

# The socket client over a real device session and a stream from the real
# server session: how a connection ends, when its frames go out.
tcpota_unit_test(test_client ${CMAKE_CURRENT_LIST_DIR}/test_client.c
                 ${CMAKE_CURRENT_LIST_DIR}/fake_port.c)
target_link_libraries(test_client PRIVATE tcpota_client tcpota_core PkgConfig::SODIUM)
