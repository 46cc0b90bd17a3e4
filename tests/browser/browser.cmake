# The dashboard in Debian's chromium (tests/browser/run.sh): npm ci of the
# lockfile into the build tree, screenshots into browser-artifacts/. Runs in
# both passes of make test: under ASan the server under test is the ASan build.
add_test(NAME browser_dashboard COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/browser/run.sh)
set_tests_properties(browser_dashboard PROPERTIES LABELS "e2e;browser" TIMEOUT 300
  ENVIRONMENT "TCPOTA=$<TARGET_FILE:tcpota>;PROXY=$<TARGET_FILE:tcpota-proxy>;NODE_DIR=${CMAKE_BINARY_DIR}/browser-node;ARTIFACTS=${CMAKE_BINARY_DIR}/browser-artifacts")
