/* Setup shared by the state test files (see state_harness.h). */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "state_harness.h"

void harness_make_dir(char dir[HARNESS_DIR_MAX], const char *template_path)
{
	cr_assert_lt(strlen(template_path), HARNESS_DIR_MAX);
	strcpy(dir, template_path);
	cr_assert_not_null(mkdtemp(dir));
}

void harness_remove_dir(const char *dir)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool harness_wait_durable(struct tsw_state *st, int efd, harness_durable_fn durable, uint64_t id)
{
	int64_t deadline = mono_ms() + HARNESS_DEADLINE_MS;

	while (!durable(st, id)) {
		struct pollfd p = {.fd = efd, .events = POLLIN};
		int64_t left = deadline - mono_ms();
		uint64_t v;

		if (left <= 0)
			return false;
		if (poll(&p, 1, (int)left) == 1 && read(efd, &v, sizeof(v)) < 0)
			return false;
	}
	return true;
}

struct tsw_state *harness_open(const char *dir, const struct tsw_state_config *cfg, int *ret_efd)
{
	struct tsw_state *st = NULL;
	int efd;

	cr_assert_eq(tsw_state_open(dir, cfg, &st), 0);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	cr_assert_geq(efd, 0);
	cr_assert_eq(tsw_state_add_waker(st, efd), 0);
	*ret_efd = efd;
	return st;
}

void harness_close(struct tsw_state *st, int efd)
{
	tsw_state_close(st);
	close(efd);
}

bool harness_wait(struct tsw_state *st, int efd, bool (*pred)(struct tsw_state *st, void *arg),
		  void *arg)
{
	int64_t deadline = mono_ms() + HARNESS_DEADLINE_MS;

	while (!pred(st, arg)) {
		struct pollfd p = {.fd = efd, .events = POLLIN};
		int64_t left = deadline - mono_ms();
		uint64_t v;

		if (left <= 0)
			return false;
		if (poll(&p, 1, (int)left) == 1 && read(efd, &v, sizeof(v)) < 0)
			return false;
	}
	return true;
}

void harness_fill_msg(uint32_t i, uint32_t len, uint8_t *out)
{
	char head[16];
	int n = snprintf(head, sizeof(head), "item-%06u:", i);

	memset(out, 'x', len);
	memcpy(out, head, (size_t)n < len ? (size_t)n : len);
}

static bool durable_or_degraded(struct tsw_state *st, void *arg)
{
	return tsw_state_saf_durable(st, *(const uint64_t *)arg) || tsw_state_degraded(st);
}

enum { FILL_BURST = 8 }; /* puts between two waits: several per commit */

uint32_t harness_fill(struct tsw_state *st, int efd, uint32_t len, uint64_t *ids, uint32_t max)
{
	uint8_t *msg = malloc(len);
	uint32_t i;

	cr_assert_not_null(msg);
	for (i = 0; i < max; i++) {
		int rc;

		harness_fill_msg(i, len, msg);
		rc = tsw_state_saf_put(st, 0, msg, len, &ids[i]);
		cr_assert_eq(rc, 0, "put %u: %d", i, rc);
		if (i % FILL_BURST == FILL_BURST - 1) {
			cr_assert(harness_wait(st, efd, durable_or_degraded, &ids[i]),
				  "put %u neither durable nor degraded: the writer is stuck", i);
			/* a degraded writer holds reversal puts: stop there */
			if (tsw_state_degraded(st)) {
				i++;
				break;
			}
		}
	}
	free(msg);
	cr_assert_lt(i, max, "%u puts and the writer never degraded", max);
	return i;
}
