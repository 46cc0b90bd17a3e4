# End-to-end tests: the real `tcpota` binaries on loopback.
# Under ASan+UBSan (TCPOTA_SANITIZED=1, tests/CMakeLists.txt) the fleet
# tests run fewer devices: there they look for memory errors, and the plain
# build checks the scale the fleet issue asks for (make test runs both).
# tls_auth needs the device side of the TLS channel binding (core) as well.
foreach(t cuts sigkill legacy fleet hostile small_frames session_rules proxy_deadlines rollback security cli_errors cli_client offer logs rogue flashdir tls_auth tls_resume tls_ends
          checkin fleet_models fleet_waves fleet_halt fleet_sigkill fleet_api fleet_legacy fleet_ops fleet_memo
          metrics http_ota fleet_pg fleet_pg_kill fleet_pg_restart fleet_pg_halt serve_config workers
          tls_writes oom zero_copy cluster_script fleet_cut
          fdlimit api_exposed
          fleet_busy ktls flashlock device_signals fleet_decide fleet_outcomes demo disk_full serve_signals
          fleet_start fleet_restore
          tls_ticket_keys proxy_protocol fleet_events tls_reload fleet_offload fleet_resign api_https notify)
  add_test(NAME e2e_${t} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_${t}.sh)
  set_tests_properties(e2e_${t} PROPERTIES LABELS e2e TIMEOUT 300
    ENVIRONMENT "TCPOTA=$<TARGET_FILE:tcpota>;PROXY=$<TARGET_FILE:tcpota-proxy>;LEGACY=$<TARGET_FILE:tcpota-legacy-client>;HOSTILE=$<TARGET_FILE:tcpota-hostile>;ROGUE=$<TARGET_FILE:tcpota-rogue>;FAILQUEUE=$<TARGET_FILE:tcpota-failqueue>;KEYUPDATE=$<TARGET_FILE:tcpota-tls-keyupdate>;TCPOTA_SANITIZED=${TESTS_SANITIZED}")
endforeach()
# `make install` into a scratch DESTDIR, from this build tree: the plain
# build only (under ASan+UBSan it would check the same files and Makefile
# rules again; the installed binaries' code runs in every other test).
if(NOT TCPOTA_SANITIZE)
  add_test(NAME e2e_install COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_install.sh)
  set_tests_properties(e2e_install PROPERTIES LABELS e2e TIMEOUT 300
    ENVIRONMENT "TCPOTA=$<TARGET_FILE:tcpota>;BUILD_DIR=${CMAKE_BINARY_DIR}")
endif()
