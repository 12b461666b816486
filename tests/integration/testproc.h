/* Test helpers: start a tool as a child process with its stdout on a pipe,
 * read lines with a deadline, stop it and collect its exit status. Used by
 * the issuer-sim and tokbench integration tests. */
#ifndef TSW_TESTS_TESTPROC_H
#define TSW_TESTS_TESTPROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tsw/iso8583.h"

#define TESTPROC_LINE_MAX 1024
#define TESTPROC_DEADLINE_MS 10000 /* default wait for a line or an exit */

struct testproc {
	pid_t pid;
	int out_fd;	/* child's stdout */
	char buf[8192]; /* bytes read but not yet returned as lines */
	size_t len;
};

/* Starts argv[0] (a path) with argv; stderr is inherited. The child is
 * killed when the calling test process dies. Returns 0 or -errno (an exec
 * failure shows as exit status 127). */
int testproc_start(struct testproc *tp, char *const argv[]);

/* Reads one line (without the newline) into out within timeout_ms.
 * Returns 0, -ETIMEDOUT, or -EPIPE when the child closed stdout. */
int testproc_line(struct testproc *tp, char *out, size_t cap, int timeout_ms);

/* Waits for the child to exit within timeout_ms (SIGKILL after that).
 * Returns its exit status (0..255), 128+signal, or -ETIMEDOUT. */
int testproc_wait(struct testproc *tp, int timeout_ms);

/* Sends sig, then waits like testproc_wait. */
int testproc_stop(struct testproc *tp, int sig, int timeout_ms);

/* Path of a built program from the test environment variable var
 * (TSW_ISSUER_SIM, TSW_TOKBENCH: tests/meson.build names them all). Unset,
 * out is "" and the start fails as an exec failure (status 127). */
void testproc_program(const char *var, char *out, size_t cap);

/* Loads the wire profile the tools run with: the .spec path in
 * SIM_TEST_PROFILE when set (a run against another profile), else the
 * shipped "default"; arg gets what to pass as --profile. Returns 0 or the
 * loader's error. */
int testproc_profile(struct tsw_iso_profile *ret_prof, char *arg, size_t cap);

/* Connects to 127.0.0.1:port; returns the fd or -errno. */
int testproc_connect(uint16_t port);

/* Parses the port out of "listening issuer=127.0.0.1:PORT". Returns the
 * port, or 0. */
uint16_t testproc_port(const char *line);

/* Milliseconds of the monotonic clock. */
int64_t testproc_now_ms(void);

#endif
