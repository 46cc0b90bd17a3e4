# Test and bench tools. Included from tools/CMakeLists.txt.
find_package(Threads REQUIRED)

# Fault-injecting TCP proxy (libevent).
add_executable(tcpota-proxy ${CMAKE_CURRENT_LIST_DIR}/proxy.c)
target_link_libraries(tcpota-proxy PRIVATE PkgConfig::LIBEVENT)
target_compile_definitions(tcpota-proxy PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)

# Client that behaves like the original ESP32 sample (one recv() per package).
add_executable(tcpota-legacy-client ${CMAKE_CURRENT_LIST_DIR}/legacy_client.c)
target_link_libraries(tcpota-legacy-client PRIVATE Threads::Threads)
target_compile_definitions(tcpota-legacy-client PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)

# Loopback helper for the proxy self-test: deterministic source, echo, fetch, ping.
add_executable(tcpota-test-source ${CMAKE_CURRENT_LIST_DIR}/echo_source.c)
target_link_libraries(tcpota-test-source PRIVATE Threads::Threads)
target_compile_definitions(tcpota-test-source PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)

add_test(NAME tools_proxy
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/../tests/tools/test_proxy.sh
                 $<TARGET_FILE:tcpota-proxy> $<TARGET_FILE:tcpota-test-source>)
set_tests_properties(tools_proxy PROPERTIES LABELS e2e TIMEOUT 120)

# Test peer for device authentication (tests/e2e/test_security.sh).
add_executable(tcpota-auth-probe ${CMAKE_CURRENT_SOURCE_DIR}/../tests/tools/auth_probe.c)
target_link_libraries(tcpota-auth-probe PRIVATE tcpota_core PkgConfig::SODIUM PkgConfig::LIBEVENT) # OpenSSL for --tls
target_compile_definitions(tcpota-auth-probe PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)

# A broken or malicious server for the device's bounds (tests/e2e/test_rogue.sh).
add_executable(tcpota-rogue ${CMAKE_CURRENT_SOURCE_DIR}/../tests/tools/rogue_server.c)
target_link_libraries(tcpota-rogue PRIVATE tcpota_core PkgConfig::SODIUM)
target_compile_definitions(tcpota-rogue PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)

# Queue failures on demand, preloaded into tcpota serve (tests/e2e/test_oom.sh).
add_library(tcpota-failqueue SHARED ${CMAKE_CURRENT_SOURCE_DIR}/../tests/tools/failqueue.c)
target_link_libraries(tcpota-failqueue PRIVATE PkgConfig::LIBEVENT ${CMAKE_DL_LIBS})
if(TCPOTA_SANITIZE) # the executables carry the runtime (CMakeLists.txt): not a second one
  target_compile_options(tcpota-failqueue PRIVATE -fno-sanitize=all)
  target_link_options(tcpota-failqueue PRIVATE -fno-sanitize=all)
endif()

# A TLS 1.3 device asking for a key update while the server's socket is
# full (tests/e2e/test_tls_ends.sh).
add_executable(tcpota-tls-keyupdate ${CMAKE_CURRENT_SOURCE_DIR}/../tests/tools/tls_keyupdate.c)
target_link_libraries(tcpota-tls-keyupdate PRIVATE tcpota_core PkgConfig::LIBEVENT) # OpenSSL
target_compile_definitions(tcpota-tls-keyupdate PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
