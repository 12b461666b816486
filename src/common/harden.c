/* Process and file hardening for the programs that hold keys and card
 * data. Contract: include/tsw/harden.h. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tsw/error.h"
#include "tsw/harden.h"

int tsw_harden_check_stat(const char *path, const struct stat *st, enum tsw_harden_kind kind,
			  char *why, size_t cap)
{
	const char *const fix[TSW_HARDEN_KIND_MAX] = {
	    [TSW_HARDEN_DIR] = "group or others may create or remove files in it: chmod go-w",
	    [TSW_HARDEN_DATA] = "group or others may write it: chmod go-w",
	    [TSW_HARDEN_SECRET] = "group or others may read or write it: chmod 600",
	};
	uid_t me = geteuid();
	bool want_dir = kind == TSW_HARDEN_DIR;
	char buf[1];

	/* one snprintf per case below, each with a literal format */
	if (!why || !cap) {
		why = buf;
		cap = sizeof(buf);
	}
	if (want_dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode)) {
		snprintf(why, cap, "%s: not a %s", path, want_dir ? "directory" : "regular file");
		return want_dir ? -ENOTDIR : -EINVAL;
	}
	if (st->st_uid != me && st->st_uid != 0) {
		snprintf(why, cap,
			 "%s: owned by uid %u, not by this user (uid %u) or root: chown it to the "
			 "user that runs tokswitch",
			 path, (unsigned)st->st_uid, (unsigned)me);
		return -TSW_E_NOT_OWNER;
	}
	if (st->st_mode & (kind == TSW_HARDEN_SECRET ? 077 : 022)) {
		snprintf(why, cap, "%s: mode %04o: %s", path, (unsigned)(st->st_mode & 07777),
			 fix[kind]);
		return -TSW_E_TOO_OPEN;
	}
	return 0;
}

int tsw_harden_check_path(const char *path, enum tsw_harden_kind kind, char *why, size_t cap)
{
	struct stat st;
	int r;

	if (stat(path, &st) < 0) {
		r = -errno;
		if (why && cap)
			snprintf(why, cap, "%s: %s", path, tsw_strerror(r));
		return r;
	}
	return tsw_harden_check_stat(path, &st, kind, why, cap);
}

int tsw_harden_check_env_dir(const char *dir, char *why, size_t cap)
{
	static const char *const files[] = {"data.mdb", "lock.mdb"};
	char path[PATH_MAX];
	int r = tsw_harden_check_path(dir, TSW_HARDEN_DIR, why, cap);

	for (size_t i = 0; r == 0 && i < sizeof(files) / sizeof(files[0]); i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, files[i]) >= sizeof(path))
			return -ENAMETOOLONG;
		r = tsw_harden_check_path(path, TSW_HARDEN_DATA, why, cap);
		if (r == -ENOENT) {
			r = 0;
			if (why && cap)
				why[0] = '\0';
		}
	}
	return r;
}

int tsw_harden_process(const char **ret_step)
{
	const struct rlimit zero = {0, 0};
	int r = 0;

	if (setrlimit(RLIMIT_CORE, &zero) < 0) {
		r = -errno;
		if (ret_step)
			*ret_step = "setrlimit";
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 && r == 0) {
		r = -errno;
		if (ret_step)
			*ret_step = "prctl";
	}
	return r;
}
