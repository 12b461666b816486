/* Keeping keys and card data to the user that runs tokswitch: the
 * processes that hold them never dump core, and the files and directories
 * that hold them (key file, vault, state) belong to that user or root and
 * nobody else may change them. One implementation for the switch, the
 * vault, the state and tokvault. */
#ifndef TSW_HARDEN_H
#define TSW_HARDEN_H

#include <stddef.h>
#include <sys/stat.h>

enum tsw_harden_kind {
	TSW_HARDEN_DIR,	   /* a directory no group or other user may write */
	TSW_HARDEN_DATA,   /* a regular file no group or other user may write */
	TSW_HARDEN_SECRET, /* a regular file no group or other user may read or write */
	TSW_HARDEN_KIND_MAX
};

/* Room for a why text: a path of up to PATH_MAX and the reason. */
#define TSW_HARDEN_WHY_MAX 4200

/* Checks st (what fstat or stat said of path) against kind: the type, the
 * owner (the effective uid or root) and the mode. Returns 0, -ENOTDIR or
 * -EINVAL (not a directory, not a regular file), -TSW_E_NOT_OWNER,
 * -TSW_E_TOO_OPEN. On failure, when why is not NULL, writes there a line
 * naming path, what is wrong and the fix (never more than cap bytes,
 * NUL-terminated). path is only quoted. */
int tsw_harden_check_stat(const char *path, const struct stat *st, enum tsw_harden_kind kind,
			  char *why, size_t cap);

/* tsw_harden_check_stat of stat(path) (symbolic links followed). Returns
 * what that does, or -errno of stat (-ENOENT: absent; why names the path
 * and the error). */
int tsw_harden_check_path(const char *path, enum tsw_harden_kind kind, char *why, size_t cap);

/* Checks an LMDB environment directory: dir (TSW_HARDEN_DIR), then
 * dir/data.mdb and dir/lock.mdb (TSW_HARDEN_DATA) where they exist.
 * Returns 0 or the first problem as tsw_harden_check_path does (-ENOENT
 * only for dir itself; -ENAMETOOLONG). */
int tsw_harden_check_env_dir(const char *dir, char *why, size_t cap);

/* Sets RLIMIT_CORE to 0 (soft and hard) and makes the process not
 * dumpable (no core file whatever core_pattern says; no ptrace or
 * /proc/PID/mem for other users). Call first thing in main. Returns 0 or
 * -errno of the step that failed (*ret_step: "setrlimit" or "prctl"; the
 * other step is still tried). */
int tsw_harden_process(const char **ret_step);

#endif
