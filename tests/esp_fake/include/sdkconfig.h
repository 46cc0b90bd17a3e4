/* sdkconfig.h - host fake: the component's options the host tests build
 * port_esp.c with (as by default in menuconfig). */
#ifndef ESP_FAKE_SDKCONFIG_H
#define ESP_FAKE_SDKCONFIG_H

#define CONFIG_TCPOTA_SIGNED_IMAGES 1
#define CONFIG_TCPOTA_TRUSTED_KEYS ""
#define CONFIG_TCPOTA_NVS_PARTITION "tcpota_nvs"
/* The fake's bootloader has rollback (new images boot pending) unless a
 * test is built with ESP_FAKE_NO_ROLLBACK (esp_fake.c follows the same). */
#ifndef ESP_FAKE_NO_ROLLBACK
#define CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE 1
#endif
/* Secure Boot v2 (test_port_esp_sbv2): each app image carries its
 * signature sector (esp_fake.h). */
#ifdef ESP_FAKE_SECURE_BOOT_V2
#define CONFIG_SECURE_BOOT 1
#define CONFIG_SECURE_BOOT_V2_ENABLED 1
#endif

#endif
