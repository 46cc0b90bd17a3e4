# Unit tests of the portable core.
foreach(t codec server device legacy manifest)
  tcpota_unit_test(test_${t} ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_${t}.c
                   ${CMAKE_CURRENT_SOURCE_DIR}/unit/fake_port.c)
  target_link_libraries(test_${t} PRIVATE tcpota_core PkgConfig::SODIUM)
  target_compile_definitions(test_${t} PRIVATE TCPOTA_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
endforeach()
