/* Setup shared by the state test files (test_state.c, test_saf.c): a
 * temporary directory per test, a state opened on it with an eventfd
 * waker, and a wait on that waker with a deadline (no sleeps). */
#ifndef TSW_TEST_STATE_HARNESS_H
#define TSW_TEST_STATE_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "tsw/state.h"

#define HARNESS_DIR_MAX 64u
#define HARNESS_DEADLINE_MS 10000

/* tsw_state_durable or tsw_state_saf_durable. */
typedef bool (*harness_durable_fn)(const struct tsw_state *st, uint64_t id);

/* mkdtemp of template (at most HARNESS_DIR_MAX - 1 bytes) into dir;
 * fails the test when it cannot. */
void harness_make_dir(char dir[HARNESS_DIR_MAX], const char *template_path);
/* Removes the state's files and dir itself. */
void harness_remove_dir(const char *dir);
/* Opens the state in dir (cfg may be NULL) with a fresh nonblocking
 * eventfd as its waker (*ret_efd); fails the test when it cannot. */
struct tsw_state *harness_open(const char *dir, const struct tsw_state_config *cfg, int *ret_efd);
/* Closes st, then its waker. */
void harness_close(struct tsw_state *st, int efd);
/* Waits on efd until durable(st, id) or HARNESS_DEADLINE_MS pass;
 * false on the deadline or a failed read. */
bool harness_wait_durable(struct tsw_state *st, int efd, harness_durable_fn durable, uint64_t id);

/* Waits on efd (the writer fires it after every round, degraded or not)
 * until pred(st, arg) or HARNESS_DEADLINE_MS pass; false on the deadline. */
bool harness_wait(struct tsw_state *st, int efd, bool (*pred)(struct tsw_state *st, void *arg),
		  void *arg);

/* The message of fill item i: its number, then 'x' up to len bytes. */
void harness_fill_msg(uint32_t i, uint32_t len, uint8_t *out);

/* Fills the state's LMDB map (a small map_size_mb) with SAF puts of len
 * bytes (harness_fill_msg), waiting for durability every few puts, until
 * the writer degraded (the puts since are held, not refused). At most max
 * puts; fails the test when the writer never degrades or a put fails.
 * Returns the puts accepted, their ids in ids[0..ret). */
uint32_t harness_fill(struct tsw_state *st, int efd, uint32_t len, uint64_t *ids, uint32_t max);

#endif
