/* store_suite.h - the backend-independent tests of the fleet store
 * (store_suite.c) and the harness the backends' own tests share: a fixture
 * with its directory, loop and store; requests run to their completion. */
#ifndef TCPOTA_TESTS_STORE_SUITE_H
#define TCPOTA_TESTS_STORE_SUITE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>

#include "store.h"

#define NOW 1796131200 /* the clock every request carries */
#define MODEL "esp32-devkit"

/* One test's store: its directory (SQLite's data, PostgreSQL's image
 * cache), its database (PostgreSQL: a connection string to an empty schema
 * of its own; "" for SQLite), the loop and the open store. */
struct fx {
    char dir[256];
    char db[1024];
    struct event_base *base;
    struct store *st;
};

/* What a backend gives the suite. */
struct ss_backend {
    /* Opens the store of f (f->dir, f->db) on base; NULL with err. */
    struct store *(*open)(const struct fx *f, struct event_base *base, char *err, size_t errlen);
    /* Makes f->db an empty database for one test (NULL: nothing to do). */
    void (*fresh)(struct fx *f);
    /* The rows of device id's history in f's database, counted directly
     * (not through the store, which returns at most STORE_HISTORY_MAX). */
    long long (*history_rows)(const struct fx *f, const char *id);
};

extern const struct ss_backend *ss_backend;

/* Runs the suite's tests, then own[0..nown), against b. cmocka's result. */
int ss_run_all(const char *name, const struct ss_backend *b, const struct CMUnitTest *own,
               size_t nown);

/* cmocka setup/teardown: a fresh fixture with its store open, and its end. */
int ss_setup(void **state);
int ss_teardown(void **state);
/* A fresh fixture (directory, database), the store not opened. */
void ss_fx_fresh(struct fx *f);
/* Opens f->st (fails the test when it cannot); ss_reopen closes it first. */
void ss_fx_open(struct fx *f);
void ss_reopen(struct fx *f);
/* Removes a directory tree. */
void ss_rm_tree(const char *dir);

/* Submits r and runs the loop until its done fired; returns r. */
struct store_req *ss_run(struct fx *f, struct store_req *r);
/* A new request for op (fails the test when out of memory). */
struct store_req *ss_req(enum store_op op);
/* An id of TCPOTA_ID_LEN bytes, each seed. */
void ss_fake_id(uint8_t *id, uint8_t seed);
/* STORE_CHECKIN of device id (model MODEL), with a report when report. */
struct store_req *ss_checkin(struct fx *f, const char *id, const uint8_t *report,
                             uint16_t result);
/* STORE_IMAGE_ADD of an image whose fake id is seed repeated. */
struct store_req *ss_image_add(struct fx *f, uint8_t seed, const char *version);
/* The same from the file at path, for model. */
struct store_req *ss_image_add_from(struct fx *f, uint8_t seed, const char *version,
                                   const char *model, const char *path);
/* A rollout of image seed (waves pct[0..n)); returns its id. */
uint64_t ss_rollout_create(struct fx *f, uint8_t seed, const char *group, const uint32_t *pct,
                           uint32_t n);
/* The rollout as stored now (the caller frees the request). */
struct store_req *ss_rollout_get(struct fx *f, uint64_t id);
/* STORE_ROLLOUT_SET from (state, n_open) to (state, n_open); its rc. */
int ss_rollout_set(struct fx *f, uint64_t id, enum rollout_state from, uint32_t from_open,
                   enum rollout_state to, uint32_t to_open);
/* STORE_CHECKIN of id, which must succeed. */
void ss_checkin_free(struct fx *f, const char *id);
/* STORE_EVENT: device id to state s (in rollout, with bytes); its rc. */
int ss_event(struct fx *f, const char *id, enum store_dev_state s, uint64_t rollout,
             uint32_t bytes);
/* Checks in n devices named dev-0000, dev-0001, ... */
void ss_register_devices(struct fx *f, unsigned n);
/* STORE_DEVICE_GET of id (the caller frees the request). */
struct store_req *ss_device_get(struct fx *f, const char *id);

#endif
