# Reliability suites: the real core sessions, POSIX port and bootloader
# joined in memory, interrupted at every flash operation, every frame and
# every byte (docs/reliability.md). CI runs small images; `make test-long`
# runs them at 1 MiB.
set(rel ${CMAKE_CURRENT_SOURCE_DIR}/reliability)
foreach(t powercut framecut)
  add_executable(tcpota-${t} ${rel}/${t}.c ${rel}/rig.c)
  target_include_directories(tcpota-${t} PRIVATE ${rel} ${PROJECT_SOURCE_DIR}/ports/posix)
  target_compile_definitions(tcpota-${t} PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
  target_link_libraries(tcpota-${t} PRIVATE tcpota_posix PkgConfig::SODIUM)
  add_test(NAME reliability_${t} COMMAND tcpota-${t})
  set_tests_properties(reliability_${t} PROPERTIES LABELS reliability TIMEOUT 300)
endforeach()

# Bad and slow peers for the hostile-peer test (tools/hostile.c).
add_executable(tcpota-hostile ${PROJECT_SOURCE_DIR}/tools/hostile.c)
target_link_libraries(tcpota-hostile PRIVATE tcpota_core)
target_compile_definitions(tcpota-hostile PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)

# Real processes on loopback: server SIGKILL and restart, hostile peers,
# cuts of a real connection at frame boundaries.
foreach(t crash hostile tcpcuts streamtail readpause stall)
  add_test(NAME reliability_${t} COMMAND bash ${rel}/test_${t}.sh)
  set_tests_properties(reliability_${t} PROPERTIES LABELS reliability TIMEOUT 300
    ENVIRONMENT "TCPOTA=$<TARGET_FILE:tcpota>;PROXY=$<TARGET_FILE:tcpota-proxy>;HOSTILE=$<TARGET_FILE:tcpota-hostile>;TCPOTA_SANITIZED=${TESTS_SANITIZED}")
endforeach()

# Their flags: a bad value is a usage error (exit 2), not a failed run.
add_test(NAME reliability_tool_args COMMAND bash ${rel}/test_tool_args.sh)
set_tests_properties(reliability_tool_args PROPERTIES LABELS reliability TIMEOUT 60
  ENVIRONMENT "POWERCUT=$<TARGET_FILE:tcpota-powercut>;FRAMECUT=$<TARGET_FILE:tcpota-framecut>")
