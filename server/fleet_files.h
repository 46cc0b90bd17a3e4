/*
 * fleet_files.h - the rule for the files of the data directory (--data):
 * they are the server's user's alone (docs/operations.md, "The files in
 * --data"). The server creates them so (directories 0700, files 0600); a
 * backup restored with other modes (cp, tar, sqlite3's .backup under umask
 * 022 make 0644 and 0755) is made private again at start, with a line
 * saying what changed. The API token is the exception: a secret that other
 * users may have read already is not taken back by a chmod, so a token
 * file others may read stops the start instead (api.c). The data directory
 * itself is the operator's choice (a mount point, say): left as it is.
 */
#ifndef TCPOTA_SERVER_FLEET_FILES_H
#define TCPOTA_SERVER_FLEET_FILES_H

#include <stddef.h>

/* What --data holds: the SQLite database (store_sqlite.c), the images, and
 * the API's token (api.c). */
#define FLEET_DB_FILE "tcpota.db"
#define FLEET_LOCK_FILE "tcpota.lock" /* held by the server that runs on --data */
#define FLEET_IMAGES_DIR "images"
#define FLEET_TOKEN_FILE "api.token"
#define FLEET_FETCH_PREFIX ".fetch-" /* a --db node's image being fetched into images/ */
/* Written by a --db node at its start: its --data is a node's, which a
 * start without --db refuses (it made a SQLite fleet there, served empty
 * behind the balancer: a trial), with or without a cached image. */
#define FLEET_NODE_FILE "tcpota.node"

/* 1 when dir holds FLEET_NODE_FILE: a --db node ran there, whatever else
 * is there (a provisioned token and an empty images/ are a first SQLite
 * start's too: a review). */
int fleet_files_is_node(const char *dir);
/* Writes dir/FLEET_NODE_FILE unless it is there. Returns 0, or -1 with
 * err (the start goes on: only a later start without --db misses it). */
int fleet_files_mark_node(const char *dir, char *err, size_t errlen);

/* Makes the server's entries of dir private: tcpota.db, its -wal and -shm,
 * tcpota.lock (0600), images/ (0700) and the files in it (0600), each when
 * others may read it; symbolic links and what is missing are left to the
 * code that opens them. Returns how many it changed, their names and old
 * modes in said ("" when none; cut to saidlen), or -1 with err when one
 * cannot be changed. */
int fleet_files_private(const char *dir, char *said, size_t saidlen, char *err, size_t errlen);

/* What to say after failing to reach path with errno err_no: for EACCES or
 * EPERM on a path of another user than the server's, "; it belongs to user
 * X (uid N) and tcpota serve runs as user Y (uid M): chown -R Y DIR, or run
 * the server as X" (dir: the --data to name); else "". Returns buf. */
#define FLEET_OWNER_HINT_MAX 300u /* its buf: two user names, a path */
const char *fleet_files_owner_hint(int err_no, const char *path, const char *dir, char *buf,
                                   size_t cap);

/* 1 when name (an entry at the top of --data) is one the fleet keeps there:
 * tcpota.db and its -wal and -shm, tcpota.lock, images/, api.token. */
int fleet_files_own(const char *name);
/* 1 when name is an image file's in images/: its SHA-256 in lowercase hex. */
int fleet_files_image_name(const char *name);

/* What images/ holds against the images a database names (a start's
 * check: a backup restored without its images/, or files removed or
 * changed by hand, were said only at the first check-in that needed one).
 * missing: images named whose file is gone, not a regular file or not of
 * the image's size; extra: files with an image's name that no image has.
 * Each list names at most FLEET_GAPS_NAMED ("ID... (VERSION, why)", then
 * "and N more"), cut to its buffer. */
#define FLEET_GAPS_NAMED 5u
#define FLEET_GAPS_SAID_MAX 600u
struct fleet_files_gaps {
    unsigned nmissing, nextra;
    char missing[FLEET_GAPS_SAID_MAX], extra[FLEET_GAPS_SAID_MAX];
};
struct store_image;
/* Fills g for images (the images/ directory) and the n rows a database
 * names (their paths as its backend made them). Returns 0, or -1 when
 * images cannot be read (g's extra then empty; missing still checked). */
int fleet_files_image_gaps(const char *images, const struct store_image *rows, size_t n,
                           struct fleet_files_gaps *g);

/* Takes dir/tcpota.lock (flock, for the caller's life) and writes our pid in
 * it, so that a second server on the same --data is refused, told who holds
 * it, rather than sweeping the first one's uploads and fetches (either
 * store: a SQLite fleet, or a --db node's image cache). Returns the lock's
 * descriptor, or -1 with err. */
int fleet_lock_take(const char *dir, char *err, size_t errlen);

/* 1, with err saying who (as fleet_lock_take does), when another process
 * holds dir/tcpota.lock; 0 when none does or there is no lock file. Takes
 * nothing: for the checks made before the store opens, whose own refusal
 * would mislead when the directory is simply in use. */
int fleet_lock_held(const char *dir, char *err, size_t errlen);

/* Clears our pid from the lock file and releases it; fd < 0 does nothing. */
void fleet_lock_release(int fd);
/* Who holds a tcpota.lock, from the pid written in it ("" or not a number:
 * unknown): "tcpota serve" or "tcpota device" (each takes the lock file of
 * its directory: a device's --flash given as --data, or the other way
 * round, was called a copy of the one asking), else "tcpota process". */
const char *fleet_lock_holder(const char *pid);

#endif
