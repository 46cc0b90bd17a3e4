/* offload.h - blocking work (hashing an image, writing and fsync'ing a
 * file) on a thread of its own, its end run back on the event loop, so
 * that the loop keeps serving devices and the API meanwhile.
 *
 * Use: offload_start(base, work, done, arg). work(arg) runs on a new
 * thread; once it has returned, done(arg) runs on base's loop, and the
 * thread is gone. What work reads and writes of arg belongs to it until
 * done runs: the loop must not touch it meanwhile. A loop that stops
 * before done ran calls offload_wait() instead (done does not run).
 *
 * A job is a thread: for work that comes seldom (an upload, an image's
 * first load: api_images.c, fleet.c), not for every request.
 */
#ifndef TCPOTA_SERVER_OFFLOAD_H
#define TCPOTA_SERVER_OFFLOAD_H

struct event_base;
struct offload;

typedef void (*offload_fn)(void *arg);

/* Runs work(arg) on a new thread (the process's signals blocked), then
 * done(arg) on base's loop; returns the job. NULL with errno (ENOMEM,
 * EMFILE, ENFILE, EAGAIN: no thread) when no memory, descriptor or thread
 * can be had: then neither runs. */
struct offload *offload_start(struct event_base *base, offload_fn work, offload_fn done, void *arg);

/* Waits for j's work to end and frees j without running its done (the
 * loop will not run again). j NULL: nothing. */
void offload_wait(struct offload *j);

#endif
