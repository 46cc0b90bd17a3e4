# install_service.cmake - run by `cmake --install` (service/CMakeLists.txt)
# with the install-time CMAKE_INSTALL_PREFIX:
#   PREFIX/lib/systemd/system/tcpota.service, naming PREFIX/bin/tcpota and
#   the config file: /etc/tcpota/tcpota.conf for PREFIX=/usr, else
#   PREFIX/etc/tcpota/tcpota.conf.
# A config file already there is the operator's: it is kept, not replaced.
# file(INSTALL) puts DESTDIR in front and records what it wrote in
# install_manifest.txt, which `make uninstall` removes.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(etc "/etc")
else()
  set(etc "${CMAKE_INSTALL_PREFIX}/etc")
endif()
set(TCPOTA_CONF "${etc}/tcpota/tcpota.conf")
if(IS_ABSOLUTE "${TCPOTA_BINDIR}")
  set(TCPOTA_FULL_BINDIR "${TCPOTA_BINDIR}")
else()
  set(TCPOTA_FULL_BINDIR "${CMAKE_INSTALL_PREFIX}/${TCPOTA_BINDIR}")
endif()
configure_file("${TCPOTA_SERVICE_SRC}/tcpota.service.in" "${TCPOTA_SERVICE_OUT}/tcpota.service" @ONLY)
file(INSTALL "${TCPOTA_SERVICE_OUT}/tcpota.service" DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
if(EXISTS "$ENV{DESTDIR}${TCPOTA_CONF}")
  message(STATUS "Kept: $ENV{DESTDIR}${TCPOTA_CONF} (the operator's; the shipped one is ${TCPOTA_SERVICE_SRC}/tcpota.conf)")
else()
  file(INSTALL "${TCPOTA_SERVICE_SRC}/tcpota.conf" DESTINATION "${etc}/tcpota" FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()
