/* tokvault import --background: the calling thread, and every thread it
 * starts afterwards (the bulk write's worker, stager and sorter inherit
 * both), runs only when a CPU would otherwise idle and does its own I/O
 * only when the disk would. */
#include <errno.h>
#include <linux/ioprio.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tokvault.h"

#define NICE_LOWEST 19

int tokvault_background(struct background *ret)
{
	struct sched_param sp = {.sched_priority = 0};
	long io;

	/* a kernel without SCHED_IDLE, or a seccomp policy: the weakest
	 * ordinary priority instead */
	if (sched_setscheduler(0, SCHED_IDLE, &sp) < 0 &&
	    setpriority(PRIO_PROCESS, 0, NICE_LOWEST) < 0)
		return -errno;
	/* say what holds, read back, not what was asked for */
	errno = 0;
	if (sched_getscheduler(0) == SCHED_IDLE)
		ret->sched = "idle";
	else if (getpriority(PRIO_PROCESS, 0) == NICE_LOWEST && errno == 0)
		ret->sched = "nice19";
	else
		return -EPERM;
	/* glibc has no wrapper for ioprio_set; a refusal leaves the class */
	(void)syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0,
		      IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0));
	io = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
	ret->io = io >= 0 && IOPRIO_PRIO_CLASS(io) == IOPRIO_CLASS_IDLE ? "idle" : "unchanged";
	return 0;
}
