/*
 * table.h - a small aligned-table printer for the fleet commands (image,
 * rollout, device list ...): collect rows of text cells, then print them
 * with each column as wide as its widest cell.
 */
#ifndef TCPOTA_CLI_TABLE_H
#define TCPOTA_CLI_TABLE_H

#include <stdio.h>
#include <time.h>

struct table;

/* A table with the given column headers (NULL-terminated). A header that
 * starts with '>' is right-aligned (numbers); the '>' is not printed.
 * Returns NULL when out of memory. */
struct table *table_new(const char *header, ...);
/* Starts a new row; the following table_cell calls fill it left to right. */
void table_row(struct table *t);
/* Appends a printf-formatted cell to the current row. Characters outside
 * printable ASCII (a server's or a device's text) are shown as '?', so a
 * cell can never move the cursor or change the terminal. */
void table_cell(struct table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints header and rows (two spaces between columns, no trailing blanks). */
void table_print(const struct table *t, FILE *f);
/* Frees t (NULL is fine). */
void table_free(struct table *t);
/* Rows added so far. */
size_t table_rows(const struct table *t);

/* Formats a UTC time "YYYY-MM-DD HH:MM:SS" into buf (at least 20 bytes);
 * "-" when t is 0 (never). Returns buf. */
const char *table_time(long long t, char *buf, size_t cap);
/* The first 12 characters of an image id (a SHA-256 in hex), or "-". */
const char *table_short_id(const char *id, char *buf, size_t cap);
/* Copies s into buf with every character outside printable ASCII replaced
 * by '?'. Returns buf. */
const char *table_clean(const char *s, char *buf, size_t cap);
/* table_clean into one of 8 rotating static buffers (256 bytes): for the
 * server's strings in a printf. Not thread-safe. */
const char *table_c(const char *s);

#endif
