# Unit tests of the code shared by the host device and the ESP-IDF task
# (ports/common): the connection loop's policy on a fake clock.
tcpota_unit_test(test_runner ${CMAKE_CURRENT_LIST_DIR}/test_runner.c)
target_link_libraries(test_runner PRIVATE tcpota_client)
