# install_service.cmake - run by `cmake --install` (service/CMakeLists.txt)
# with the install-time CMAKE_INSTALL_PREFIX:
#   PREFIX/lib/systemd/system/tcpota.service, naming PREFIX/bin/tcpota and
#   the config file: /etc/tcpota/tcpota.conf for PREFIX=/usr, else
#   PREFIX/etc/tcpota/tcpota.conf.
# A config file already there that differs from the shipped one is the
# operator's: it is kept, not replaced, and still listed in
# install_manifest.txt, so that `make uninstall` finds it, keeps it too and
# says so (before, the install that kept it left it out of the manifest and
# uninstall passed over it in silence). One identical to it is ours (an
# earlier install, never edited): installed again, so that it is in
# install_manifest.txt and `make uninstall` removes it (before, a second
# install kept it as "the operator's" and uninstall left it behind).
# file(INSTALL) puts DESTDIR in front and records what it wrote in
# install_manifest.txt, which `make uninstall` removes.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(etc "/etc")
else()
  set(etc "${CMAKE_INSTALL_PREFIX}/etc")
endif()
set(TCPOTA_CONF "${etc}/tcpota/tcpota.conf")
# Checked before a file is written (the service installs first, top-level
# CMakeLists.txt): a failed install leaves nothing make uninstall cannot find.
if(EXISTS "$ENV{DESTDIR}${TCPOTA_CONF}")
  # A directory or a FIFO there: said (file(SHA256) failed with CMake's own
  # words on a directory, and would wait for ever on a FIFO).
  execute_process(COMMAND test -f "$ENV{DESTDIR}${TCPOTA_CONF}" RESULT_VARIABLE not_file)
  if(not_file)
    message(FATAL_ERROR "$ENV{DESTDIR}${TCPOTA_CONF} is there and is not a file (a directory?): "
            "the config file is installed at that path; move it away, or give another PREFIX")
  endif()
endif()
if(IS_ABSOLUTE "${TCPOTA_BINDIR}")
  set(TCPOTA_FULL_BINDIR "${TCPOTA_BINDIR}")
else()
  set(TCPOTA_FULL_BINDIR "${CMAKE_INSTALL_PREFIX}/${TCPOTA_BINDIR}")
endif()
configure_file("${TCPOTA_SERVICE_SRC}/tcpota.service.in" "${TCPOTA_SERVICE_OUT}/tcpota.service" @ONLY)
file(INSTALL "${TCPOTA_SERVICE_OUT}/tcpota.service" DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
set(shipped_conf "${TCPOTA_SERVICE_SRC}/tcpota.conf")
set(edited 0)
if(EXISTS "$ENV{DESTDIR}${TCPOTA_CONF}")
  file(SHA256 "$ENV{DESTDIR}${TCPOTA_CONF}" have)
  file(SHA256 "${shipped_conf}" want)
  if(NOT have STREQUAL want)
    set(edited 1)
  endif()
endif()
if(edited)
  message(STATUS "Kept: $ENV{DESTDIR}${TCPOTA_CONF} (edited: the operator's; the shipped one is ${shipped_conf})")
  # The list file(INSTALL) appends to (paths without DESTDIR), which the
  # top-level cmake_install.cmake writes out as install_manifest.txt.
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${TCPOTA_CONF}")
else()
  file(INSTALL "${shipped_conf}" DESTINATION "${etc}/tcpota" FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()
