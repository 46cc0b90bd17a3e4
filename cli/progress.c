/* progress.c - download progress on stderr (see progress.h). */
#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define BAR_WIDTH 30
#define COLS_DEFAULT 80 /* stderr is no terminal, or one that does not say */

/* The columns of stderr's terminal. */
static size_t term_cols(void)
{
    struct winsize ws;

    return ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : COLS_DEFAULT;
}

int progress_parse(const char *s, enum progress_mode *out)
{
    static const struct {
        const char *name;
        enum progress_mode mode;
    } modes[] = {
        {"auto", PROGRESS_AUTO},
        {"bar", PROGRESS_BAR},
        {"lines", PROGRESS_LINES},
        {"none", PROGRESS_NONE},
    };

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(s, modes[i].name) == 0) {
            *out = modes[i].mode;
            return 0;
        }
    }
    return -1;
}

void progress_init(struct progress *p, enum progress_mode mode, const char *prefix)
{
    if (mode == PROGRESS_AUTO) {
        mode = isatty(STDERR_FILENO) ? PROGRESS_BAR : PROGRESS_LINES;
    }
    p->mode = mode;
    p->prefix = prefix ? prefix : "";
    p->drawn = 0;
    p->last_pct = -1;
    p->last_decile = -1;
}

/* Whole percent, computed in 64 bits: images reach 4 GiB. */
static int percent(uint32_t done, uint32_t total)
{
    if (total == 0 || done >= total) {
        return 100;
    }
    return (int)((uint64_t)done * 100u / total);
}

void progress_start(struct progress *p, uint32_t done, uint32_t total)
{
    progress_clear(p);
    p->last_pct = -1;
    /* Lines: the starting point itself is printed (as its 10% step) once. */
    p->last_decile = percent(done, total) / 10 - 1;
}

#define BAR_MIN 5 /* narrower, the bar is left out */

/* One line that fits the terminal (a bar that wrapped left a new line at
 * each redraw on a 40-column terminal: a new user's trial). What goes as
 * the terminal narrows: the bar shrinks (to a width that holds for the
 * whole image: it once shrank as the figures grew), then the KiB figures
 * go, then the bar; the percentage goes last. */
static void draw_bar(struct progress *p, uint32_t done, uint32_t total, int pct)
{
    char pcts[8], kib[48], kib_max[48], line[512];
    size_t cols = term_cols(), room, width = 0, fill, n;
    int with_kib, cut = 0;

    snprintf(pcts, sizeof(pcts), " %3d%%", pct);
    snprintf(kib, sizeof(kib), " %lu/%lu KiB", (unsigned long)(done / 1024u),
             (unsigned long)(total / 1024u));
    snprintf(kib_max, sizeof(kib_max), " %lu/%lu KiB", (unsigned long)(total / 1024u),
             (unsigned long)(total / 1024u));
    n = strlen(p->prefix);
    if (n + strlen(pcts) + 1 > cols && cols > strlen(pcts) + 1) {
        n = cols - strlen(pcts) - 1; /* the prefix is cut for the percentage */
        cut = 1;
    }
    room = cols > n + 1 ? cols - n - 1 : 0; /* the cursor's column */
    if (n > sizeof(line) - 1) {
        n = sizeof(line) - 1; /* cut below, as the terminal is narrower */
    }
    with_kib = room >= 2 + BAR_MIN + strlen(pcts) + strlen(kib_max);
    if (room >= 2 + BAR_MIN + strlen(pcts)) {
        width = room - 2 - strlen(pcts) - (with_kib ? strlen(kib_max) : 0);
        width = width > BAR_WIDTH ? BAR_WIDTH : width;
    }
    memcpy(line, p->prefix, n);
    line[n] = 0;
    if (width && n + width + 2 < sizeof(line)) {
        fill = (size_t)pct * width / 100;
        line[n++] = '[';
        for (size_t i = 0; i < width; i++) {
            line[n++] = i < fill ? '#' : '.';
        }
        line[n++] = ']';
        line[n] = 0;
    }
    /* (The prefix ends in a space, unless it was cut.) */
    snprintf(line + n, sizeof(line) - n, "%s%s", width || cut ? pcts : pcts + 1,
             with_kib ? kib : "");
    if (cols > 1 && strlen(line) > cols - 1) {
        line[cols - 1] = 0;
    }
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    p->drawn = 1;
}

void progress_update(struct progress *p, uint32_t done, uint32_t total)
{
    int pct = percent(done, total);

    switch (p->mode) {
    case PROGRESS_BAR:
        /* At most ~100 redraws per image, and one after every clear. */
        if (pct != p->last_pct || !p->drawn) {
            p->last_pct = pct;
            draw_bar(p, done, total, pct);
        }
        break;
    case PROGRESS_LINES:
        if (pct / 10 > p->last_decile) {
            p->last_decile = pct / 10;
            /* the share these bytes are, not the 10 % step they passed */
            fprintf(stderr, "%s%d%% (%lu/%lu bytes)\n", p->prefix, pct, (unsigned long)done,
                    (unsigned long)total);
        }
        break;
    default:
        break;
    }
}

void progress_clear(struct progress *p)
{
    if (p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = 0;
    }
}
