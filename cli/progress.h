/* progress.h - download progress on stderr: a redrawn bar or plain lines. */
#ifndef TCPOTA_CLI_PROGRESS_H
#define TCPOTA_CLI_PROGRESS_H

#include <stdint.h>

enum progress_mode {
    PROGRESS_AUTO = 0, /* bar on a terminal, lines otherwise */
    PROGRESS_BAR,      /* one line redrawn with \r */
    PROGRESS_LINES,    /* one line at every 10% */
    PROGRESS_NONE,
};

struct progress {
    enum progress_mode mode; /* never AUTO once initialised */
    const char *prefix;      /* printed before every line, e.g. "device x: " */
    int drawn;               /* the bar is on screen (the cursor is on its line) */
    int last_pct;            /* percentage last drawn by the bar, -1: none */
    int last_decile;         /* last 10% step printed as a line */
};

/* Parses "auto", "bar", "lines" or "none". Returns 0 or -1. */
int progress_parse(const char *s, enum progress_mode *out);

/* Resolves AUTO against stderr and resets the display. */
void progress_init(struct progress *p, enum progress_mode mode, const char *prefix);

/* A transfer (re)starts at `done` of `total` bytes: nothing below it is
 * reported again, so a resume at 40% does not print 0%..40%. */
void progress_start(struct progress *p, uint32_t done, uint32_t total);

/* `done` of `total` bytes are in. Draws only when something visible changes. */
void progress_update(struct progress *p, uint32_t done, uint32_t total);

/* Erases the bar so that another line can be printed; the next update
 * draws it again. */
void progress_clear(struct progress *p);

#endif
