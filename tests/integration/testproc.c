#include "testproc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t testproc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int testproc_start(struct testproc *tp, char *const argv[])
{
	pid_t parent = getpid(), pid;
	int fds[2], r;

	memset(tp, 0, sizeof(*tp));
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(fds[0]);
		close(fds[1]);
		return r;
	}
	if (pid == 0) {
		/* a test that fails an assertion exits at once: take the tool
		 * down with it instead of leaving it running */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(fds[1], STDOUT_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	tp->pid = pid;
	tp->out_fd = fds[0];
	return 0;
}

int testproc_line(struct testproc *tp, char *out, size_t cap, int timeout_ms)
{
	int64_t deadline = testproc_now_ms() + timeout_ms;

	for (;;) {
		char *nl = memchr(tp->buf, '\n', tp->len);
		struct pollfd pfd = {.fd = tp->out_fd, .events = POLLIN};
		int64_t left;
		ssize_t n;

		if (nl) {
			size_t l = (size_t)(nl - tp->buf);

			if (l >= cap)
				l = cap - 1;
			memcpy(out, tp->buf, l);
			out[l] = '\0';
			tp->len -= (size_t)(nl - tp->buf) + 1;
			memmove(tp->buf, nl + 1, tp->len);
			return 0;
		}
		left = deadline - testproc_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		if (tp->len == sizeof(tp->buf))
			tp->len = 0; /* an over-long line: drop it */
		n = read(tp->out_fd, tp->buf + tp->len, sizeof(tp->buf) - tp->len);
		if (n <= 0)
			return -EPIPE;
		tp->len += (size_t)n;
	}
}

int testproc_wait(struct testproc *tp, int timeout_ms)
{
	int64_t deadline = testproc_now_ms() + timeout_ms;
	int status;

	for (;;) {
		pid_t r = waitpid(tp->pid, &status, WNOHANG);

		if (r == tp->pid)
			break;
		if (testproc_now_ms() >= deadline) {
			kill(tp->pid, SIGKILL);
			waitpid(tp->pid, &status, 0);
			close(tp->out_fd);
			return -ETIMEDOUT;
		}
		/* wait for output or exit: stdout closes when the child ends */
		{
			struct pollfd pfd = {.fd = tp->out_fd, .events = POLLIN};
			char sink[512];

			if (poll(&pfd, 1, 10) > 0 && tp->len + sizeof(sink) <= sizeof(tp->buf)) {
				ssize_t n = read(tp->out_fd, tp->buf + tp->len, sizeof(sink));

				if (n > 0)
					tp->len += (size_t)n;
			}
		}
	}
	/* keep what is left of stdout for testproc_line */
	for (;;) {
		ssize_t n;

		if (tp->len == sizeof(tp->buf))
			break;
		n = read(tp->out_fd, tp->buf + tp->len, sizeof(tp->buf) - tp->len);
		if (n <= 0)
			break;
		tp->len += (size_t)n;
	}
	close(tp->out_fd);
	tp->out_fd = -1;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int testproc_stop(struct testproc *tp, int sig, int timeout_ms)
{
	kill(tp->pid, sig);
	return testproc_wait(tp, timeout_ms);
}

void testproc_program(const char *var, char *out, size_t cap)
{
	const char *path = getenv(var);

	if (!path || !*path)
		fprintf(stderr, "testproc: %s unset (tests/meson.build sets it for meson test)\n",
			var);
	snprintf(out, cap, "%s", path ? path : "");
}

int testproc_profile(struct tsw_iso_profile *ret_prof, char *arg, size_t cap)
{
	const char *env = getenv("SIM_TEST_PROFILE");

	if (env && *env) {
		snprintf(arg, cap, "%s", env);
		return tsw_iso_profile_load(env, ret_prof, NULL);
	}
	snprintf(arg, cap, "default");
	return tsw_iso_profile_load_named(NULL, "default", ret_prof);
}

int testproc_connect(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd, r;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

uint16_t testproc_port(const char *line)
{
	const char *colon = strrchr(line, ':');
	long v;

	if (strncmp(line, "listening ", 10) != 0 || !colon)
		return 0;
	v = strtol(colon + 1, NULL, 10);
	return v > 0 && v < 65536 ? (uint16_t)v : 0;
}
