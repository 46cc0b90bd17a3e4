/* store_pg.c - the PostgreSQL store (store_pg.h): connecting, and the store
 * thread that owns the connection.
 *
 * Why a thread and not libpq's asynchronous API on the loop: an op is a
 * short program of dependent statements (a check-in reads the device, then
 * decides what to insert, then reads the rollout...), written once as plain
 * sequential code like the SQLite store's; on the loop, each would become a
 * chain of callbacks. The thread gives the same guarantee (the loop never
 * waits for the database) with the same queue and completion pipe as
 * store_sqlite.c (store_worker.c, shared), and one connection per node.
 *
 * Transactions: the requests handed over together (one turn of the loop)
 * run in ONE transaction and are posted after its COMMIT. When none of
 * them is durable (store.h) the commit is asynchronous (synchronous_commit
 * off): the server makes it durable within wal_writer_delay, as SQLite's
 * batch window does; a node's crash loses nothing, the database's crash at
 * most that window. A durable one waits for the flush.
 *
 * The requests run without savepoints first; when one fails, the list is
 * rolled back and runs again with a savepoint around each, so that the
 * failed one leaves nothing half done and the others commit. Not a
 * savepoint each from the start: two statements more per request, and a
 * row that a subtransaction updates after the list locked it (below)
 * needs a MultiXact (the 1-node check-in benchmark: 12,500/s with them,
 * 17,600/s without; bench/README.md, sixteenth session).
 *
 * Transactions stay short: a row lock (a wave's counters, a rollout under
 * compare-and-set) is held for one list, not a window, so other nodes
 * never wait long. The rows of the devices a list writes are locked first,
 * in id order (pg_lock_devices), so two nodes' lists wait for each other
 * rather than deadlock; a deadlock or a serialization failure that still
 * happens rolls the list back and runs it again. When that first lock
 * fails (a row held past lock_timeout), the list runs with savepoints and
 * without it: only the requests that need the held row fail. A lost
 * connection is made again at once and the list run again, unless it was
 * lost under the list's COMMIT: the list may have committed, and run again
 * it would write its history twice (and answer a new device's first
 * check-in as not new).
 * Its transaction id, which BEGIN's round trip brings back, tells the new
 * connection whether it did (commit_outcome; settle_kept for a list the
 * outage kept). When the database cannot be reached, store_pg_outage.c
 * takes over. */
#include "fleet_files.h" /* fleet_lock_take */
#include "store_common.h"
#include "store_pg_internal.h"
#include "pq_dl.h" /* libpq through pq_load()'s pointers */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG_RERUNS_MAX 5 /* a list that deadlocks again and again fails after this */

/* How a list runs (attempt's `savepoints`): without savepoints, the
 * fastest; with one around each request, after one failed; and with one
 * around each but without locking the list's devices first, after that
 * lock failed (a row held past lock_timeout). */
#define SP_NONE 0
#define SP_EACH 1
#define SP_NOLOCK 2

/* ---- running a list in one transaction ---- */

static int dispatch(struct pgstore *st, struct store_req *r)
{
    int rc = store_req_check(r);

    if (rc < 0) {
        return rc;
    }
    switch (r->op) {
    case STORE_CHECKIN: return pg_op_checkin(st, r);
    case STORE_EVENT: return pg_op_event(st, r);
    case STORE_EVENTS: return pg_op_events(st, r);
    case STORE_IMAGE_ADD: return pg_op_image_add(st, r);
    case STORE_IMAGE_LIST: return pg_op_image_list(st, r);
    case STORE_IMAGE_GET: return pg_op_image_get(st, r);
    case STORE_IMAGE_RM: return pg_op_image_rm(st, r);
    case STORE_ROLLOUT_CREATE: return pg_op_rollout_create(st, r);
    case STORE_ROLLOUT_LIST: return pg_op_rollout_list(st, r);
    case STORE_ROLLOUT_GET: return pg_op_rollout_get(st, r);
    case STORE_ROLLOUT_SET: return pg_op_rollout_set(st, r);
    case STORE_DEVICE_LIST: return pg_op_device_list(st, r);
    case STORE_DEVICE_GET: return pg_op_device_get(st, r);
    case STORE_DEVICE_SET_GROUP: return pg_op_device_set_group(st, r);
    case STORE_DEVICE_RETRY: return pg_op_device_retry(st, r);
    case STORE_DEVICE_DELETE: return pg_op_device_delete(st, r);
    case STORE_SECRET_SET: return pg_op_secret_set(st, r);
    case STORE_SECRET_LIST: return pg_op_secret_list(st, r);
    case STORE_SEEN: return pg_op_seen(st, r);
    case STORE_SUMMARY: return pg_op_summary(st, r);
    }
    return store_err_set(r, STORE_E_INVAL, "unknown store operation %d", (int)r->op);
}

/* Runs r; with a savepoint around it when others share the transaction
 * (what it left of wave counter changes goes back with it). */
static void run_one(struct pgstore *st, struct store_req *r, int alone)
{
    size_t nwd = st->nwd;

    store_req_reset(r); /* what a run before left, on a rerun */
    if (!alone && pg_exec(st, r, "SAVEPOINT op") != 0) {
        return;
    }
    if (!alone) {
        memcpy(st->wd_op, st->wd, nwd * sizeof(st->wd[0]));
    }
    if (dispatch(st, r) == STORE_OK) {
        if (!alone) {
            (void)pg_exec(st, r, "RELEASE op");
        }
    } else if (!alone && !st->rerun) {
        (void)pg_exec(st, NULL, "ROLLBACK TO op"); /* r->rc and r->err stay */
        (void)pg_exec(st, NULL, "RELEASE op");
        memcpy(st->wd, st->wd_op, nwd * sizeof(st->wd[0]));
        st->nwd = nwd;
    }
}

/* Every request of the list fails with why (its writes went with the
 * transaction). Not "the database failed: ...": whoever reports STORE_E_IO
 * says so (server/api.c), and why is often the head's own error. */
static void fail_all(struct store_req *head, const char *why)
{
    for (; head; head = head->next) {
        (void)store_err_set(head, STORE_E_IO, "%s", why);
    }
}

/* The files a committed list changes in the local cache: an added image's
 * upload moves in (or goes, when the image was there), a removed one's
 * copy goes. Only after COMMIT: a row never names a missing file for long,
 * and a file never outlives a failed add. */
static void after_commit(struct pgstore *st, struct store_req *head)
{
    struct store_req *r;

    (void)st;
    for (r = head; r; r = r->next) {
        if (r->rc != STORE_OK) {
            continue;
        }
        if (r->op == STORE_IMAGE_RM) {
            (void)unlink(r->u.image.img->path);
        } else if (r->op == STORE_IMAGE_ADD && r->u.image.path &&
                   strcmp(r->u.image.path, r->u.image.img->path) != 0) {
            if (access(r->u.image.img->path, F_OK) == 0 ||
                rename(r->u.image.path, r->u.image.img->path) != 0) {
                (void)unlink(r->u.image.path);
            }
        }
    }
}

/* Tests (st->cut_commit): the connection drops here, as a network or a
 * failover drops it. The socket becomes one whose peer has gone: libpq
 * reads the end of the stream and gives the connection up; the server
 * sees its client gone. */
static void cut_here(struct pgstore *st)
{
    int s[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) == 0) {
        (void)dup2(s[0], PQsocket(st->db));
        (void)close(s[0]);
        (void)close(s[1]);
    }
}

/* COMMIT. 0: committed; 1: the connection broke under it, and it may have
 * committed (commit_outcome asks with st->xid); -1: refused, or lost under
 * a list of reads (head says why; st->rerun after a serialization
 * failure). */
static int commit(struct pgstore *st, struct store_req *head)
{
    int cut = st->cut_commit, sent = 0;
    struct pollfd pf;
    char why[STORE_ERR_MAX];

    st->cut_commit = PG_CUT_NONE;
    if (cut == PG_CUT_BEFORE) {
        cut_here(st);
    } else if (cut == PG_CUT_AFTER && (sent = PQsendQuery(st->db, "COMMIT")) != 0) {
        /* Committed and answered; the answer is lost unread. */
        pf.fd = PQsocket(st->db);
        pf.events = POLLIN;
        (void)poll(&pf, 1, (int)(PG_OUTCOME_POLLS * PG_OUTCOME_POLL_MS));
        cut_here(st);
    }
    switch (pg_commit(st, head, sent)) {
    case 0: return 0;
    case -2:
        if (st->xid) {
            st->lost_commits++;
            return 1;
        }
        snprintf(why, sizeof(why), "%s", PQerrorMessage(st->db));
        why[strcspn(why, "\n")] = '\0';
        (void)store_err_set(head, STORE_E_IO, "COMMIT: the connection was lost: %s", why);
        return -1;
    default: return -1;
    }
}

/* Whether transaction xid committed, asked on a connection made again if
 * need be: 0 it did, 1 it did not, -1 unknown (still in progress after
 * PG_OUTCOME_POLLS polls, or too old to tell), -2 no connection. pid: the
 * backend that ran it (0: unknown), ended after PG_OUTCOME_KILL_POLLS if it
 * still holds the transaction open. */
static int xid_outcome(struct pgstore *st, int64_t xid, int pid)
{
    char x[24], x32[16], p[16];
    const char *v[1] = {x}, *kv[2] = {p, x32};
    PGresult *res;
    unsigned i;
    int ans = -1;

    snprintf(x, sizeof(x), "%lld", (long long)xid);
    snprintf(x32, sizeof(x32), "%u", (unsigned)((uint64_t)xid & 0xffffffffu)); /* its xid */
    snprintf(p, sizeof(p), "%d", pid);
    for (i = 0; i < PG_OUTCOME_POLLS && ans == -1; i++) {
        if (PQstatus(st->db) != CONNECTION_OK && pg_reconnect(st) != 0) {
            return -2;
        }
        if (pid && i == PG_OUTCOME_KILL_POLLS) {
            PQclear(PQexecParams(st->db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                 " WHERE pid = $1::int AND backend_xid::text = $2",
                                 2, NULL, kv, NULL, NULL, 0));
        }
        res = PQexecParams(st->db, "SELECT txid_status($1::bigint)", 1, NULL, v, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
            const char *s = PQgetvalue(res, 0, 0);
            ans = strcmp(s, "committed") == 0 ? 0 : strcmp(s, "aborted") == 0 ? 1 : -1;
        } else if (PQstatus(st->db) == CONNECTION_OK) {
            PQclear(res);
            break; /* no answer to have (too old to tell): unknown */
        }
        PQclear(res);
        if (ans == -1 && i + 1 < PG_OUTCOME_POLLS) {
            (void)usleep(PG_OUTCOME_POLL_MS * 1000u); /* 'in progress' */
        }
    }
    return ans;
}

/* On a new connection, whether the list whose COMMIT lost its answer
 * (st->xid) committed: 0 it did (the list's answers stand), 1 it did not
 * (run it again), -1 unknown (every request says so; not run again), -2 no
 * new connection: the outage keeps it, each request marked with the
 * transaction, which settle_kept asks about before it runs again. */
static int commit_outcome(struct pgstore *st, struct store_req *head)
{
    struct store_req *r;
    int ans = xid_outcome(st, st->xid, st->xid_pid);

    if (ans == -2) {
        for (r = head; r; r = r->next) {
            r->backend_tag = st->xid;
        }
    } else if (ans == -1) {
        (void)store_err_set(head, STORE_E_IO, PG_UNKNOWN_MSG, "the new one could not tell",
                            (long long)st->xid);
        fail_all(head->next, head->err);
    }
    return ans;
}

/* Appends r (and what follows it) to the list *head .. *tail. */
static void append(struct store_req **head, struct store_req **tail, struct store_req *r)
{
    if (*tail) {
        (*tail)->next = r;
    } else {
        *head = r;
    }
    *tail = r;
}

/* Kept requests back from an outage: those of a transaction whose COMMIT
 * lost its answer (backend_tag) are asked about first. Committed: they are
 * done, not run again; aborted or unknown: they run (a step is kept, not
 * lost: at worst written twice). Returns the list to run; NULL when the
 * connection went again (the outage has them back). */
static struct store_req *settle_kept(struct pgstore *st, struct store_req *kept)
{
    struct store_req *r, *next, *run = NULL, *run_tail = NULL, *done = NULL, *done_tail = NULL;
    int64_t tag = 0;
    int ans = 1;

    for (r = kept; r; r = next) {
        next = r->next;
        r->next = NULL;
        if (r->backend_tag && r->backend_tag != tag) {
            tag = r->backend_tag;
            ans = xid_outcome(st, tag, 0);
            if (ans == -2) {
                r->next = next;
                append(&run, &run_tail, r);
                if (done) {
                    store_worker_post(&st->w, done, done_tail);
                }
                pg_outage_start(st, run);
                return NULL;
            }
        }
        if (r->backend_tag && ans == 0) {
            r->backend_tag = 0;
            append(&done, &done_tail, r);
            continue;
        }
        r->backend_tag = 0;
        append(&run, &run_tail, r);
    }
    if (done) {
        store_worker_post(&st->w, done, done_tail);
    }
    return run;
}

/* Requests that write nothing: a list of them alone needs no transaction
 * id, since running it again changes nothing. */
static int reads_only(const struct store_req *r)
{
    switch (r->op) {
    case STORE_IMAGE_LIST:
    case STORE_IMAGE_GET:
    case STORE_ROLLOUT_LIST:
    case STORE_ROLLOUT_GET:
    case STORE_DEVICE_LIST:
    case STORE_DEVICE_GET:
    case STORE_SECRET_LIST:
    case STORE_SUMMARY: return 1;
    default: return 0;
    }
}

/* One attempt at the list: 0 committed, 1 to run again, 2 to run again
 * with a savepoint around each request (one failed: SP_EACH), 3 its
 * COMMIT lost its answer (commit_outcome; the answers are kept), 4 to run
 * again as 2 but without the lock of all the list's devices first (that
 * lock failed: SP_NOLOCK), -1 failed (a request alone that failed: nothing
 * it wrote is kept). */
static int attempt(struct pgstore *st, struct store_req *head, int savepoints)
{
    struct store_req *r;
    int durable = 0, reads = 1, alone = head->next == NULL, locked;

    for (r = head; r; r = r->next) {
        durable |= store_req_durable(r);
        reads &= reads_only(r);
    }
    st->rerun = 0;
    st->nwd = 0;
    if (pg_begin(st, head, durable, reads) != 0) {
        fail_all(head->next, head->err);
        PQclear(PQexec(st->db, "ROLLBACK"));
        return -1;
    }
    /* The list's device rows first, in id order (pg_lock_devices). When
     * that fails (a row that another transaction holds past the operator's
     * lock_timeout), the list runs again without it, each request taking
     * its own rows: the ones that need the held row fail, the others
     * commit. */
    locked = savepoints == SP_NOLOCK || pg_lock_devices(st, head) == STORE_OK;
    if (!locked && !alone && !st->rerun && PQstatus(st->db) == CONNECTION_OK) {
        PQclear(PQexec(st->db, "ROLLBACK"));
        return 4;
    }
    for (r = head; locked && r && !st->rerun; r = r->next) {
        run_one(st, r, alone || !savepoints);
        if (!savepoints && r->rc < 0 && !st->rerun) {
            /* What it wrote goes with the transaction: alone, its error
             * is the answer; with others, they run again around it. */
            PQclear(PQexec(st->db, "ROLLBACK"));
            return alone ? -1 : 2;
        }
    }
    if (locked && !st->rerun && pg_waves_flush(st, head) == STORE_OK && !st->rerun) {
        int c = commit(st, head);
        if (c >= 0) {
            return c == 0 ? 0 : 3;
        }
    }
    PQclear(PQexec(st->db, "ROLLBACK"));
    if (st->rerun) {
        return 1;
    }
    fail_all(head->next, head->err);
    return -1;
}

/* Runs a list in one transaction and posts it. A connection found lost
 * is made again at once and the list run again on it (a restarted
 * backend, a failover that already happened); when it cannot be, the
 * outage begins (store_pg_outage.c). */
static void run_list(struct pgstore *st, struct store_req *head)
{
    struct store_req *tail = head;
    int k, rc = -1, again = 0, savepoints = SP_NONE;

    if (!head) {
        return;
    }
    while (tail->next) {
        tail = tail->next;
    }
    for (k = 0; k < PG_RERUNS_MAX; k++) {
        if (PQstatus(st->db) != CONNECTION_OK && pg_reconnect(st) != 0) {
            pg_outage_start(st, head);
            return;
        }
        rc = attempt(st, head, savepoints);
        if (rc == 3) {
            /* Asked, never simply run again: committed (0) or unknown (-1)
             * ends here, aborted (1) runs again. */
            if ((rc = commit_outcome(st, head)) == -2) {
                pg_outage_start(st, head);
                return;
            }
            if (rc != 1) {
                break;
            }
            continue;
        }
        if ((rc == 2 && savepoints == SP_NONE) || (rc == 4 && savepoints != SP_NOLOCK)) {
            /* Not a rerun: the mode only moves on (none, each, no lock),
             * so this happens at most twice. */
            savepoints = rc == 2 ? SP_EACH : SP_NOLOCK;
            k--;
            continue;
        }
        if (rc == -1 && PQstatus(st->db) != CONNECTION_OK) {
            if (again++ == 0) {
                continue; /* the connection broke under it: once more on a new one */
            }
            pg_outage_start(st, head);
            return;
        }
        if (rc != 1) {
            break;
        }
    }
    if (rc == 0) {
        after_commit(st, head);
    } else if (rc == 1) {
        fail_all(head, "deadlocked with another node again and again; try again");
    } else if (rc == 2 || rc == 4) {
        /* Not reached (each mode is tried once), but never posted as done. */
        fail_all(head, "its requests could not run together; try again");
    }
    store_worker_post(&st->w, head, tail);
}

/* The worker's `run`: one list, one transaction; while the database is
 * unreachable, the outage's rules, and the kept steps first once it is
 * back. */
static void run(void *ctx, struct store_req *list, int stopping)
{
    struct pgstore *st = ctx;
    struct store_req *kept;

    if (pg_outage_on(st)) {
        pg_outage_keep(st, list);
        if (!(kept = pg_outage_retry(st, stopping)) || !(kept = settle_kept(st, kept))) {
            return;
        }
        run_list(st, kept);
        return;
    }
    run_list(st, list);
}

/* ---- the backend's table ---- */

static int pgs_submit(struct store *base, struct store_req *r)
{
    return store_worker_submit(&((struct pgstore *)base)->w, r);
}

/* Store thread: the socket the loop may cut from now on (-1: none), as a
 * duplicate of ours: libpq closes its own descriptor when the connection
 * breaks, and the number it had may then be another file's (a device's
 * connection) by the time the loop cuts (a review). */
static void sock_publish(struct pgstore *st, int fd)
{
    pthread_mutex_lock(&st->sock_mu);
    if (st->sock >= 0) {
        close(st->sock);
    }
    st->sock = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    pthread_mutex_unlock(&st->sock_mu);
}

/* The loop's, on a database that answered nothing for --db-timeout: its
 * processes stopped or its host stalled while its kernel still answers
 * TCP, no statement ever fails, and libpq waits for ever (keepalives and
 * tcp_user_timeout see a live peer). The socket shut down, libpq reads the
 * end of the stream at once: the connection is lost under the list, which
 * runs once more on a new connection, else the outage begins (its
 * requests answered as the database unreachable), and a COMMIT whose
 * answer was lost is asked about, as after any cut (store_pg_outage.c). Not
 * while the database answers statements: a request of many (an image of
 * hundreds of MB stored in chunks) is slow, not hung. */
static int pgs_unstick(struct store *base, unsigned idle_s)
{
    struct pgstore *st = (struct pgstore *)base;
    int64_t quiet_ms = pg_mono_ms() - (int64_t)atomic_load(&st->answered_ms);
    int cut = 0;

    pthread_mutex_lock(&st->sock_mu);
    if (st->sock >= 0 && quiet_ms >= (int64_t)idle_s * 1000) {
        cut = shutdown(st->sock, SHUT_RDWR) == 0;
    }
    pthread_mutex_unlock(&st->sock_mu);
    return cut;
}

static void teardown(struct pgstore *st)
{
    store_worker_release(&st->w);
    pg_cache_free(st);
    sock_publish(st, -1); /* closes our duplicate */
    if (st->db) {
        PQfinish(st->db);
    }
    fleet_lock_release(st->lock_fd);
    pthread_mutex_destroy(&st->sock_mu);
    free(st);
}

/* The close's, when its wait for the store thread ran out: the database
 * hangs (the loop's --db-timeout cut no longer runs), and a stop waited on
 * it for ever (a trial: 91 s and counting, past systemd's stop timeout).
 * Cut as the loop cuts: the thread's requests fail as after a network
 * cut, its last connection attempt fails, and it says what is lost. */
static void cut_at_close(void *arg)
{
    struct pgstore *st = arg;

    store_worker_notice(&st->w, 1, "the database has answered nothing for %u s while stopping:"
                        " its connection is dropped, and no new one is tried",
                        st->base.stop_wait_s);
    atomic_store(&st->no_reconnect, 1);
    (void)pgs_unstick(&st->base, 0);
}

static void pgs_close(struct store *base)
{
    struct pgstore *st = (struct pgstore *)base;

    /* runs what is queued, every done */
    (void)store_worker_stop_within(&st->w, base->stop_wait_s, cut_at_close, st);
    teardown(st);
}

static const struct store_vt pg_vt = {"postgresql", pgs_submit, pgs_close, 1, pgs_unstick};

/* ---- open ---- */

/* dir and dir/images exist as writable directories (created 0700). */
static int prepare_dir(const char *dir, char *err, size_t errlen)
{
    char images[512];
    struct stat sb;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the data directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "%s is not a writable directory; give --data a directory for"
                 " this node's image cache", dir);
        return -1;
    }
    snprintf(images, sizeof(images), "%s/images", dir);
    if ((mkdir(images, 0700) != 0 && errno != EEXIST) || stat(images, &sb) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", images, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s is not a directory; move it away", images);
        return -1;
    }
    return 0;
}

/* The server's notices (NOTICE: relation exists...) are not the operator's. */
static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* What a node sets unless --db says otherwise: a name in pg_stat_activity,
 * and bounds on waiting for a database that went away (a connection
 * attempt, a peer that stopped answering), so that the store thread fails
 * its requests and tries again rather than hanging for the kernel's
 * minutes: keepalives while nothing is in flight, and tcp_user_timeout
 * while something is (a COMMIT sent into a partition would wait for the
 * kernel's retransmissions, about 15 minutes; keepalives do not run then).
 * Unix sockets ignore the TCP ones. */
static const char *const conn_keys[] = {"application_name", "connect_timeout", "keepalives_idle",
                                        "keepalives_interval", "keepalives_count",
                                        "tcp_user_timeout", "target_session_attrs", "dbname",
                                        NULL};

/* What to do after libpq's msg: a password refused is a wrong one, not a
 * missing one; one none gave while PGPASSFILE names a file that is not
 * there is that file's fault (a trial: both got "give the role's
 * password ..."); anything else, check the database. buf: for the file. */
const char *pg_hint(const char *msg, char *buf, size_t cap)
{
    const char *file = getenv("PGPASSFILE");

    if (strstr(msg, "password authentication failed")) {
        return "the password given was refused: check it where it is given (in --db, in the file"
               " PGPASSFILE names, or in ~/.pgpass: the line HOST:PORT:DATABASE:USER:PASSWORD"
               " matching --db) against the role's in PostgreSQL";
    }
    /* libpq 14 and later; 10 to 13 said it their way. */
    if (strstr(msg, "session is read-only") || strstr(msg, "could not make a writable connection")) {
        return PG_READ_ONLY_HINT;
    }
    if (strstr(msg, "too many connections") || strstr(msg, "too many clients") ||
        strstr(msg, "connection slots are reserved")) {
        return "PostgreSQL holds as many connections as it allows (max_connections, or the role's"
               " CONNECTION LIMIT): raise the limit, or run fewer nodes (each node holds"
               " connections of its own)";
    }
    if (strstr(msg, "database \"") && strstr(msg, "does not exist")) {
        return "create it (createdb -O ROLE DB, as the database's owner) or give --db the name of"
               " the one that holds the fleet";
    }
    if (!strstr(msg, "password")) {
        return PG_CHECK_HINT;
    }
    if (file && *file && access(file, F_OK) != 0) {
        snprintf(buf, cap, "PGPASSFILE names %s, which does not exist: put the role's password"
                 " there (mode 0600, lines HOST:PORT:DATABASE:USER:PASSWORD; docs/scaling.md)",
                 file);
        return buf;
    }
    if (file && *file && strstr(msg, "no password supplied")) {
        /* It is there, and gave nothing for --db (a trial: told to give a
         * file that was given). */
        snprintf(buf, cap, "PGPASSFILE names %s, which has no line for --db's host, port, database"
                 " and role (HOST:PORT:DATABASE:USER:PASSWORD, * for any), or is not of mode 0600"
                 " (libpq then ignores it)", file);
        return buf;
    }
    return PG_PASSWORD_HINT;
}

/* 1 when the session may not write (a hot standby, or the database's or
 * role's default_transaction_read_only). */
static int read_only(PGconn *db)
{
    PGresult *res = PQexec(db, "SHOW transaction_read_only");
    int ro = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
             strcmp(PQgetvalue(res, 0, 0), "on") == 0;

    PQclear(res);
    return ro;
}

/* A new connection with the node's settings in st->db's place (the old one
 * closed), also when it failed: its error is then what PQerrorMessage
 * says. A new one, not PQreset(): that reuses the password libpq read at
 * the first connect, so a password changed in PGPASSFILE while the node
 * ran never reached it (a trial: "password authentication failed" until a
 * restart, which lost the kept steps). Returns 0 when it is up, -1. */
int pg_connect_new(struct pgstore *st)
{
    /* dbname last and expanded: the connection string's own settings win.
     * read-write: libpq refuses a session that takes no writes (a standby
     * after a failover, default_transaction_read_only set), also on a
     * reconnect, where the start's check (read_only) does not run: the
     * node is then in an outage, not failing every write (a trial). */
    const char *values[] = {"tcpota", "10", "10", "5", "3", "25000", "read-write", st->conninfo,
                            NULL};
    PGconn *db;

    sock_publish(st, -1); /* the old one: not cut while the new one is made */
    db = PQconnectdbParams(conn_keys, values, 1);

    if (!db) {
        return -1; /* out of memory: the old one stays, its error with it */
    }
    if (st->db) {
        PQfinish(st->db);
    }
    st->db = db;
    if (PQstatus(db) != CONNECTION_OK) {
        return -1;
    }
    PQsetNoticeProcessor(db, quiet, NULL);
    /* A quiet spell of its own from now (pgs_unstick), and no answer to a
     * statement yet (store_note_answer). */
    atomic_store(&st->answered_ms, (long long)pg_mono_ms());
    store_note_answer(0);
    sock_publish(st, PQsocket(db));
    return 0;
}

static int connect_db(struct pgstore *st, char *err, size_t errlen)
{
    static const char head[] = "cannot connect to the database (--db): ";
    char msg[256], said[PATH_MAX + 200];
    const char *hint;
    size_t fixed;

    if (pg_connect_new(st) < 0) {
        snprintf(msg, sizeof(msg), "%s", st->db ? PQerrorMessage(st->db) : "out of memory");
        msg[strcspn(msg, "\n")] = '\0';
        /* A string libpq cannot take is no database to check on. */
        if (store_pg_conninfo_check(st->conninfo, msg, err, errlen) < 0) {
            return -1;
        }
        /* What to do, last and whole (before, libpq's words alone), as the
         * outage's message says it; libpq's shortened if it must be. A
         * password refused, or none given ("fe_sendauth: no password
         * supplied"): the database runs, the password is what to fix. */
        hint = pg_hint(msg, said, sizeof(said));
        fixed = sizeof(head) - 1 + 2 + strlen(hint);
        snprintf(err, errlen, "%s%.*s; %s", head, errlen > fixed + 1 ? (int)(errlen - fixed - 1) : 0,
                 msg, hint);
        return -1;
    }
    if (read_only(st->db)) {
        /* Else every check-in and upload failed later with "cannot execute
         * UPDATE in a read-only transaction" and no hint (a trial). */
        snprintf(err, errlen, "transaction_read_only is on at --db: %s", PG_READ_ONLY_HINT);
        return -1;
    }
    if ((st->base.schema_from = pg_migrate(st->db, err, errlen)) < 0) {
        return -1;
    }
    st->base.schema_to = PG_SCHEMA_VERSION;
    return 0;
}

struct store *store_pg_open(const char *conninfo, const char *dir, struct event_base *base,
                            char *err, size_t errlen)
{
    struct pgstore *st;
    struct store_worker_ops ops = {.run = run, .idle_ms = pg_outage_idle_ms,
                                   .admit = pg_outage_admit};

    if (pq_load(err, errlen) != 0) {
        return NULL;
    }
    if (strlen(dir) >= sizeof(st->dir) || strlen(conninfo) >= sizeof(st->conninfo)) {
        snprintf(err, errlen, "the %s is too long", strlen(dir) >= sizeof(st->dir)
                 ? "data directory path" : "--db connection string");
        return NULL;
    }
    if (prepare_dir(dir, err, errlen) != 0) {
        return NULL;
    }
    if (!(st = calloc(1, sizeof(*st)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->base.vt = &pg_vt;
    st->lock_fd = -1;
    st->sock = -1;
    pthread_mutex_init(&st->sock_mu, NULL);
    store_worker_init(&st->w);
    st->kept_max = PG_KEPT_MAX;
    snprintf(st->dir, sizeof(st->dir), "%s", dir);
    snprintf(st->conninfo, sizeof(st->conninfo), "%s", conninfo);
    ops.ctx = st;
    ops.owner = &st->base;
    /* Before the database, which a start may wait for: a second node on
     * this --data would sweep the first one's fetches (fleet_open). */
    st->lock_fd = fleet_lock_take(dir, err, errlen);
    if (st->lock_fd < 0 || connect_db(st, err, errlen) != 0 ||
        store_worker_start(&st->w, &ops, base, err, errlen) != 0) {
        teardown(st);
        return NULL;
    }
    return &st->base;
}
