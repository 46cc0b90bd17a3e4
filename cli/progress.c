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

#define BAR_MIN 5 /* narrower, the bar is left out: the figures alone */

/* One line that fits the terminal (a bar that wrapped left a new line at
 * each redraw on a 40-column terminal: a new user's trial): the bar
 * shrinks, goes below BAR_MIN, and what still does not fit is cut. */
static void draw_bar(struct progress *p, uint32_t done, uint32_t total, int pct)
{
    char tail[64], line[512];
    size_t cols = term_cols(), fixed, width = BAR_WIDTH, fill, n;

    snprintf(tail, sizeof(tail), " %3d%% %lu/%lu KiB", pct, (unsigned long)(done / 1024u),
             (unsigned long)(total / 1024u));
    fixed = strlen(p->prefix) + 2 + strlen(tail) + 1; /* "[]", and the cursor's column */
    if (fixed + width > cols) {
        width = cols > fixed ? cols - fixed : 0;
    }
    n = (size_t)snprintf(line, sizeof(line), "%s", p->prefix);
    if (width >= BAR_MIN && n + width + 2 < sizeof(line)) {
        fill = (size_t)pct * width / 100;
        line[n++] = '[';
        for (size_t i = 0; i < width; i++) {
            line[n++] = i < fill ? '#' : '.';
        }
        line[n++] = ']';
    }
    line[n] = 0;
    snprintf(line + n, sizeof(line) - n, "%s", width >= BAR_MIN ? tail : tail + 1);
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
