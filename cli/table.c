/* table.c - the aligned-table printer (see table.h). */
#include "table.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_COLS_MAX 16

struct table {
    size_t ncols;
    char *head[TABLE_COLS_MAX];
    int right[TABLE_COLS_MAX];
    char **cells; /* rows * ncols, row-major; NULL where a row has fewer cells */
    size_t rows, cap, cur; /* cur: cells filled in the current row */
};

const char *table_clean(const char *s, char *buf, size_t cap)
{
    size_t i;

    if (cap == 0) return buf;
    for (i = 0; s && s[i] && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    buf[i] = 0;
    return buf;
}

struct table *table_new(const char *header, ...)
{
    struct table *t = calloc(1, sizeof(*t));
    va_list ap;
    const char *h;

    if (!t) return NULL;
    va_start(ap, header);
    for (h = header; h && t->ncols < TABLE_COLS_MAX; h = va_arg(ap, const char *)) {
        t->right[t->ncols] = h[0] == '>';
        t->head[t->ncols] = strdup(h + t->right[t->ncols]);
        if (!t->head[t->ncols]) break;
        t->ncols++;
    }
    va_end(ap);
    return t;
}

void table_row(struct table *t)
{
    if (!t) return;
    if (t->rows == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        char **n = realloc(t->cells, ncap * t->ncols * sizeof(*n));
        if (!n) return; /* the row is dropped; table_cell sees no room */
        t->cells = n;
        t->cap = ncap;
    }
    memset(t->cells + t->rows * t->ncols, 0, t->ncols * sizeof(*t->cells));
    t->rows++;
    t->cur = 0;
}

void table_cell(struct table *t, const char *fmt, ...)
{
    char raw[512];
    va_list ap;
    char *c;

    if (!t || t->rows == 0 || t->cur >= t->ncols) return;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    c = malloc(strlen(raw) + 1);
    if (!c) return;
    table_clean(raw, c, strlen(raw) + 1);
    t->cells[(t->rows - 1) * t->ncols + t->cur++] = c;
}

static void print_line(const struct table *t, FILE *f, char *const *cells, const size_t *w)
{
    size_t pending = 0; /* blanks owed before the next cell (none at the end of a line) */

    for (size_t j = 0; j < t->ncols; j++) {
        const char *s = cells[j] ? cells[j] : "";
        size_t len = strlen(s);

        fprintf(f, "%*s", (int)pending, "");
        if (t->right[j]) {
            fprintf(f, "%*s", (int)w[j], s);
            pending = 2;
        } else {
            fputs(s, f);
            pending = w[j] - len + 2;
        }
    }
    fputc('\n', f);
}

void table_print(const struct table *t, FILE *f)
{
    size_t w[TABLE_COLS_MAX];

    if (!t) return;
    for (size_t j = 0; j < t->ncols; j++) {
        w[j] = strlen(t->head[j]);
        for (size_t r = 0; r < t->rows; r++) {
            const char *s = t->cells[r * t->ncols + j];
            if (s && strlen(s) > w[j]) w[j] = strlen(s);
        }
    }
    print_line(t, f, t->head, w);
    for (size_t r = 0; r < t->rows; r++) {
        print_line(t, f, t->cells + r * t->ncols, w);
    }
}

size_t table_rows(const struct table *t)
{
    return t ? t->rows : 0;
}

void table_free(struct table *t)
{
    if (!t) return;
    for (size_t j = 0; j < t->ncols; j++) free(t->head[j]);
    for (size_t i = 0; i < t->rows * t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    free(t);
}

const char *table_time(long long t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t <= 0 || !gmtime_r(&tt, &tm) || strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm) == 0) {
        snprintf(buf, cap, "-");
    }
    return buf;
}

const char *table_short_id(const char *id, char *buf, size_t cap)
{
    char tmp[13];

    if (!id || !*id) {
        snprintf(buf, cap, "-");
        return buf;
    }
    snprintf(tmp, sizeof(tmp), "%s", id);
    return table_clean(tmp, buf, cap);
}

const char *table_c(const char *s)
{
    static char bufs[8][256];
    static unsigned next;

    return table_clean(s, bufs[next++ % 8], sizeof(bufs[0]));
}
