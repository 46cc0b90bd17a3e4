# TLS (CONFIG_TCPOTA_TLS, tls_esp.c): with the embedded-CA choice, embeds the
# PEM file CONFIG_TCPOTA_TLS_CA_PEM_PATH (relative to the project directory)
# as NUL-terminated text under the fixed symbol names tls_esp.c uses
# (_binary_tcpota_ca_pem_start/_end), whatever the file is called.
if(CONFIG_TCPOTA_TLS_CA_PEM AND NOT CMAKE_BUILD_EARLY_EXPANSION)
    idf_build_get_property(tcpota_project_dir PROJECT_DIR)
    get_filename_component(tcpota_ca_pem "${CONFIG_TCPOTA_TLS_CA_PEM_PATH}"
                           ABSOLUTE BASE_DIR "${tcpota_project_dir}")
    if(NOT EXISTS "${tcpota_ca_pem}")
        message(FATAL_ERROR "tcpota: CONFIG_TCPOTA_TLS_CA_PEM_PATH: ${tcpota_ca_pem} does not exist "
                            "(the CA certificate that signed the server's, PEM; see docs/esp-idf.md, TLS)")
    endif()
    target_add_binary_data(${COMPONENT_LIB} "${tcpota_ca_pem}" TEXT RENAME_TO tcpota_ca_pem)
endif()
