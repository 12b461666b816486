/* Setup shared by the state test files (see state_harness.h). */
#include <criterion/criterion.h>
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
