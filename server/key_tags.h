/*
 * key_tags.h - the first words of the key files `tcpota keygen` and
 * `tcpota device secret` write (cli/keys.h: one line, "<tag> v1 <hex>"),
 * so that a key file given where another file belongs is named for what it
 * is: by the writers, by keys.c's readers, by serve's --auth-file and
 * --tls-ticket-key.
 */
#ifndef TCPOTA_KEY_TAGS_H
#define TCPOTA_KEY_TAGS_H

#include <string.h>

#define KEY_TAG_PUBLIC "tcpota-ed25519-public"
#define KEY_TAG_PRIVATE "tcpota-ed25519-secret"
#define KEY_TAG_DEVICE "tcpota-secret"
#define KEY_TAG_VERSION "v1"

/* The tag that the word w (n bytes, a file's first) is, or NULL. A device
 * id such as "tcpota-gw-01" is none. */
static inline const char *key_tag_of(const char *w, size_t n)
{
    static const char *const tags[] = {KEY_TAG_PUBLIC, KEY_TAG_PRIVATE, KEY_TAG_DEVICE};

    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        if (strlen(tags[i]) == n && memcmp(w, tags[i], n) == 0) return tags[i];
    }
    return NULL;
}

#endif /* TCPOTA_KEY_TAGS_H */
