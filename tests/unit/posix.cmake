# Unit tests of the POSIX device port (ports/posix): the NOR flash emulator
# and the ESP32-like device built on it.
tcpota_unit_test(test_flash_emu ${CMAKE_CURRENT_LIST_DIR}/test_flash_emu.c)
target_link_libraries(test_flash_emu PRIVATE tcpota_posix)
# Both see every sync of the port (sync_fault.h), to fail one on demand.
target_link_options(test_flash_emu PRIVATE -Wl,--wrap=fdatasync,--wrap=fsync)

tcpota_unit_test(test_posix_port ${CMAKE_CURRENT_LIST_DIR}/test_posix_port.c)
target_link_libraries(test_posix_port PRIVATE tcpota_posix)
target_link_options(test_posix_port PRIVATE -Wl,--wrap=fdatasync,--wrap=fsync)

tcpota_unit_test(test_posix_inspect ${CMAKE_CURRENT_LIST_DIR}/test_posix_inspect.c)
target_link_libraries(test_posix_inspect PRIVATE tcpota_posix)
# The test sees every open() of the port, to check that inspect opens
# nothing writeable (being root, file modes cannot prove it).
target_link_options(test_posix_inspect PRIVATE -Wl,--wrap=open)

# The host device's trusted keys kept in its NVS (cli/device_ident.c),
# against an in-memory NVS: the CLI file and the helpers it uses.
tcpota_unit_test(test_device_trust ${CMAKE_CURRENT_LIST_DIR}/test_device_trust.c
                 ${PROJECT_SOURCE_DIR}/cli/device_ident.c ${PROJECT_SOURCE_DIR}/cli/util.c)
target_include_directories(test_device_trust PRIVATE ${PROJECT_SOURCE_DIR}/cli ${PROJECT_SOURCE_DIR}/server)
target_link_libraries(test_device_trust PRIVATE tcpota_server tcpota_posix tcpota_core)
