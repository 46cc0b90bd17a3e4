# Host tests of the ESP-IDF port: esp-idf/components/tcpota/port_esp.c
# compiled unchanged against a fake of esp_ota_ops/esp_partition/NVS/PSA Crypto
# with ESP-IDF's semantics (tests/esp_fake), and trust_esp.c (keys, secret).
# Ed25519 is the host's libsodium, as espressif/libsodium is on the device.
set(TCPOTA_ESP_COMPONENT ${PROJECT_SOURCE_DIR}/esp-idf/components/tcpota)
tcpota_unit_test(test_port_esp ${CMAKE_CURRENT_LIST_DIR}/test_port_esp.c
                 ${TCPOTA_ESP_COMPONENT}/port_esp.c
                 ${TCPOTA_ESP_COMPONENT}/trust_esp.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/esp_fake.c)
target_include_directories(test_port_esp PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/include
                           ${CMAKE_CURRENT_LIST_DIR}/../esp_fake ${TCPOTA_ESP_COMPONENT}/include)
target_link_libraries(test_port_esp PRIVATE tcpota_core PkgConfig::SODIUM)
# The compile check's own checks (version printed, a missing include folder
# or header is an error), on fake ESP-IDF trees: no IDF or compiler needed.
add_test(NAME esp_idf_check_script
         COMMAND bash ${TCPOTA_ESP_COMPONENT}/check/test-esp-idf-check.sh)

# The tcpota task (tcpota_esp.c) on the same fakes plus FreeRTOS tasks,
# notifications and a fake clock (task_fake.c), with the shared runner and
# socket loop, against a server session on loopback.
tcpota_unit_test(test_tcpota_esp ${CMAKE_CURRENT_LIST_DIR}/test_tcpota_esp.c
                 ${TCPOTA_ESP_COMPONENT}/tcpota_esp.c
                 ${TCPOTA_ESP_COMPONENT}/port_esp.c
                 ${TCPOTA_ESP_COMPONENT}/trust_esp.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/esp_fake.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/task_fake.c)
target_include_directories(test_tcpota_esp PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/include
                           ${CMAKE_CURRENT_LIST_DIR}/../esp_fake ${TCPOTA_ESP_COMPONENT}/include)
target_compile_definitions(test_tcpota_esp PRIVATE CONFIG_TCPOTA_RX_BUFFER_SIZE=4108
                           "CONFIG_TCPOTA_MODEL=\"\"")
target_link_libraries(test_tcpota_esp PRIVATE tcpota_client PkgConfig::SODIUM pthread)
