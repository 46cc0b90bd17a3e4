# Unit tests of the portable core.
foreach(t codec server device legacy manifest version)
  tcpota_unit_test(test_${t} ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_${t}.c
                   ${CMAKE_CURRENT_SOURCE_DIR}/unit/fake_port.c)
  target_link_libraries(test_${t} PRIVATE tcpota_core PkgConfig::SODIUM)
  target_compile_definitions(test_${t} PRIVATE TCPOTA_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
endforeach()

# CRC32C vectors for the four builds: host (the crc32 instruction where the
# CPU has it, via tcpota_core), slicing-by-8 (a host without it), plain
# 1 KiB table (microcontrollers) and -DTCPOTA_SMALL (nibble table).
tcpota_unit_test(test_crc32c ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_crc32c.c)
target_link_libraries(test_crc32c PRIVATE tcpota_core)
tcpota_unit_test(test_crc32c_slice8 ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_crc32c.c
                 ${PROJECT_SOURCE_DIR}/core/src/crc32c.c)
target_include_directories(test_crc32c_slice8 PRIVATE ${PROJECT_SOURCE_DIR}/core/include)
target_compile_definitions(test_crc32c_slice8 PRIVATE TCPOTA_FAST_CRC TCPOTA_NO_HW_CRC)
tcpota_unit_test(test_crc32c_small ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_crc32c.c
                 ${PROJECT_SOURCE_DIR}/core/src/crc32c.c)
target_include_directories(test_crc32c_small PRIVATE ${PROJECT_SOURCE_DIR}/core/include)
target_compile_definitions(test_crc32c_small PRIVATE TCPOTA_SMALL)
tcpota_unit_test(test_crc32c_table ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_crc32c.c
                 ${PROJECT_SOURCE_DIR}/core/src/crc32c.c)
target_include_directories(test_crc32c_table PRIVATE ${PROJECT_SOURCE_DIR}/core/include)

# The server's pure parts: the offer policy and the device registry.
tcpota_unit_test(test_offer ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_offer.c
                 ${PROJECT_SOURCE_DIR}/server/offer.c ${PROJECT_SOURCE_DIR}/server/devices.c)
target_include_directories(test_offer PRIVATE ${PROJECT_SOURCE_DIR}/server)
target_link_libraries(test_offer PRIVATE tcpota_core)

# The wave and halt policy of staged rollouts.
tcpota_unit_test(test_rollout ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_rollout.c
                 ${PROJECT_SOURCE_DIR}/server/rollout.c)
target_include_directories(test_rollout PRIVATE ${PROJECT_SOURCE_DIR}/server)
target_link_libraries(test_rollout PRIVATE tcpota_core)

# The server's log lines: time, text and JSON formats, escaping of peer bytes.
tcpota_unit_test(test_log ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_log.c)
target_link_libraries(test_log PRIVATE tcpota_server)
