# Host tests of the ESP-IDF port: esp-idf/components/tcpota/port_esp.c
# compiled unchanged against a fake of esp_ota_ops/esp_partition/NVS/PSA Crypto
# with ESP-IDF's semantics (tests/esp_fake), and trust_esp.c (keys, secret).
# Ed25519 is the host's libsodium, as espressif/libsodium is on the device.
set(TCPOTA_ESP_COMPONENT ${PROJECT_SOURCE_DIR}/esp-idf/components/tcpota)
# test_port_esp_norollback: the same with a bootloader without rollback
# (ESP-IDF's default): new images boot final, never pending
# (tests/esp_fake/include/sdkconfig.h); the tests of a bootloader with
# rollback are compiled, not run, there.
# test_port_esp_sbv2: with Secure Boot v2, whose images end in a signature
# sector that esp_image_get_metadata() leaves out of the image's length.
foreach(t test_port_esp test_port_esp_norollback test_port_esp_sbv2)
  tcpota_unit_test(${t} ${CMAKE_CURRENT_LIST_DIR}/test_port_esp.c
                   ${TCPOTA_ESP_COMPONENT}/port_esp.c
                   ${TCPOTA_ESP_COMPONENT}/trust_esp.c
                   ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/esp_fake.c
                   ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/esp_fake_log.c)
  target_include_directories(${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/include
                             ${CMAKE_CURRENT_LIST_DIR}/../esp_fake ${TCPOTA_ESP_COMPONENT}/include)
  target_link_libraries(${t} PRIVATE tcpota_core PkgConfig::SODIUM)
endforeach()
target_compile_definitions(test_port_esp_norollback PRIVATE ESP_FAKE_NO_ROLLBACK)
target_compile_options(test_port_esp_norollback PRIVATE -Wno-unused-function)
target_compile_definitions(test_port_esp_sbv2 PRIVATE ESP_FAKE_SECURE_BOOT_V2)
target_compile_options(test_port_esp_sbv2 PRIVATE -Wno-unused-function)
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
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/esp_fake_log.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/task_fake.c)
target_include_directories(test_tcpota_esp PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/include
                           ${CMAKE_CURRENT_LIST_DIR}/../esp_fake ${TCPOTA_ESP_COMPONENT}/include)
target_compile_definitions(test_tcpota_esp PRIVATE CONFIG_TCPOTA_RX_BUFFER_SIZE=4108
                           "CONFIG_TCPOTA_MODEL=\"\"" "CONFIG_IDF_TARGET=\"esp32\"")
target_link_libraries(test_tcpota_esp PRIVATE tcpota_client PkgConfig::SODIUM pthread)

# A CONFIG_TCPOTA_MODEL over 32 characters stops the build, naming it (it
# was cut short at run time, and a signed image's model never matched).
add_test(NAME test_tcpota_esp_model_too_long
         COMMAND ${CMAKE_C_COMPILER} -fsyntax-only -DCONFIG_TCPOTA_RX_BUFFER_SIZE=4108
                 "-DCONFIG_TCPOTA_MODEL=\"a-model-name-of-thirty-three-char\"" "-DCONFIG_IDF_TARGET=\"esp32\""
                 -I${CMAKE_CURRENT_LIST_DIR}/../esp_fake/include -I${CMAKE_CURRENT_LIST_DIR}/../esp_fake
                 -I${TCPOTA_ESP_COMPONENT}/include -I${PROJECT_SOURCE_DIR}/core/include
                 -I${PROJECT_SOURCE_DIR}/ports/common ${TCPOTA_ESP_COMPONENT}/tcpota_esp.c)
set_tests_properties(test_tcpota_esp_model_too_long PROPERTIES LABELS unit
                     PASS_REGULAR_EXPRESSION "CONFIG_TCPOTA_MODEL is longer than 32 characters")

# The TLS module (tls_esp.c, CONFIG_TCPOTA_TLS) on a fake of Mbed TLS's SSL
# API over a real socket pair (tests/esp_fake/tls), below the shared client
# and a real device session; built as with an embedded CA PEM.
tcpota_unit_test(test_tls_esp ${CMAKE_CURRENT_LIST_DIR}/test_tls_esp.c
                 ${TCPOTA_ESP_COMPONENT}/tls_esp.c
                 ${CMAKE_CURRENT_LIST_DIR}/fake_port.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/tls/tls_fake.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/tls/tls_fake_alone.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/esp_fake_log.c)
target_include_directories(test_tls_esp PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/tls
                           ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/include
                           ${TCPOTA_ESP_COMPONENT}/include)
target_compile_definitions(test_tls_esp PRIVATE CONFIG_TCPOTA_TLS=1 CONFIG_TCPOTA_TLS_CA_PEM=1
                           CONFIG_TCPOTA_TLS_HOST="" CONFIG_MBEDTLS_CERTIFICATE_BUNDLE=1
                           CONFIG_TCPOTA_TLS_RESUME=1)
target_link_libraries(test_tls_esp PRIVATE tcpota_core tcpota_client PkgConfig::SODIUM)
# Without MBEDTLS_SSL_KEYING_MATERIAL_EXPORT tls_esp.c must not build, and
# the error names the sdkconfig option.
add_test(NAME test_tls_esp_needs_export
         COMMAND ${CMAKE_C_COMPILER} -fsyntax-only -DESP_FAKE_TLS_NO_EXPORT -DCONFIG_TCPOTA_TLS=1
                 -I${CMAKE_CURRENT_LIST_DIR}/../esp_fake/tls -I${CMAKE_CURRENT_LIST_DIR}/../esp_fake/include
                 -I${TCPOTA_ESP_COMPONENT}/include -I${PROJECT_SOURCE_DIR}/core/include
                 -I${PROJECT_SOURCE_DIR}/ports/common ${TCPOTA_ESP_COMPONENT}/tls_esp.c)
set_tests_properties(test_tls_esp_needs_export PROPERTIES LABELS unit
                     PASS_REGULAR_EXPRESSION "#error.*set CONFIG_MBEDTLS_SSL_KEYING_MATERIAL_EXPORT=y")

# The task (tcpota_esp.c) built with CONFIG_TCPOTA_TLS and an embedded CA:
# the task fakes above plus the Mbed TLS fake, against a loopback server
# that requires authentication bound to the (toy) TLS session.
tcpota_unit_test(test_tcpota_esp_tls ${CMAKE_CURRENT_LIST_DIR}/test_tcpota_esp_tls.c
                 ${TCPOTA_ESP_COMPONENT}/tcpota_esp.c
                 ${TCPOTA_ESP_COMPONENT}/tls_esp.c
                 ${TCPOTA_ESP_COMPONENT}/port_esp.c
                 ${TCPOTA_ESP_COMPONENT}/trust_esp.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/esp_fake.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/esp_fake_log.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/task_fake.c
                 ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/tls/tls_fake.c)
target_include_directories(test_tcpota_esp_tls PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/include
                           ${CMAKE_CURRENT_LIST_DIR}/../esp_fake/tls
                           ${CMAKE_CURRENT_LIST_DIR}/../esp_fake ${TCPOTA_ESP_COMPONENT}/include)
target_compile_definitions(test_tcpota_esp_tls PRIVATE CONFIG_TCPOTA_RX_BUFFER_SIZE=4108
                           "CONFIG_TCPOTA_MODEL=\"\"" "CONFIG_IDF_TARGET=\"esp32\"" CONFIG_TCPOTA_TLS=1 CONFIG_TCPOTA_TLS_CA_PEM=1
                           CONFIG_TCPOTA_TLS_HOST="" CONFIG_TCPOTA_TLS_RESUME=1)
target_link_libraries(test_tcpota_esp_tls PRIVATE tcpota_client tcpota_core PkgConfig::SODIUM pthread)
