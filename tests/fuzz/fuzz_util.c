/* Helpers shared by the fuzz targets: fuzz_util.h. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_util.h"

static char dir[PATH_MAX];

static void remove_dir(void)
{
	char cmd[PATH_MAX + 16];

	if (!dir[0])
		return;
	(void)!snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

const char *fuzz_dir(void)
{
	struct stat st;
	const char *base;

	if (dir[0])
		return dir;
	/* tmpfs when there is one: the vault and state commits fsync */
	base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : getenv("TMPDIR");
	if ((size_t)snprintf(dir, sizeof(dir), "%s/tsw-fuzz-XXXXXX", base ? base : "/tmp") >=
		sizeof(dir) ||
	    !mkdtemp(dir))
		abort();
	atexit(remove_dir);
	return dir;
}

const char *fuzz_write(const char *name, const void *data, size_t len, unsigned mode)
{
	static char path[PATH_MAX];
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", fuzz_dir(), name) >= sizeof(path))
		abort();
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0 || fchmod(fd, mode) < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
	return path;
}

bool fuzz_has(const void *hay, size_t hay_len, const void *needle, size_t needle_len)
{
	return needle_len > 0 && memmem(hay, hay_len, needle, needle_len) != NULL;
}
