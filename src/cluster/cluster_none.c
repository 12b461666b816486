/* The cluster in a build without libnats: nothing connects. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tsw/cluster.h"

int tsw_cluster_open(const struct tsw_cluster_config *c, struct tsw_cluster **ret_cluster,
		     char *why, size_t cap)
{
	(void)c;
	(void)ret_cluster;
	if (why && cap)
		snprintf(why, cap,
			 "this build has no cluster (built with -Dcluster=disabled, or without "
			 "libnats)");
	return -ENOTSUP;
}

void tsw_cluster_close(struct tsw_cluster *cl)
{
	(void)cl;
}

int tsw_cluster_publish_to(struct tsw_cluster *cl, struct tsw_vault *v)
{
	(void)cl;
	(void)v;
	return -ENOTSUP;
}

int tsw_cluster_publish_error(struct tsw_cluster *cl)
{
	(void)cl;
	return 0;
}

int tsw_cluster_catch_up(struct tsw_cluster *cl, struct tsw_vault *v, uint64_t *ret_applied)
{
	(void)cl;
	(void)v;
	(void)ret_applied;
	return -ENOTSUP;
}

int tsw_cluster_applier_start(struct tsw_cluster *cl, struct tsw_vault *v,
			      tsw_cluster_event_fn on_event, void *ctx)
{
	(void)cl;
	(void)v;
	(void)on_event;
	(void)ctx;
	return -ENOTSUP;
}

void tsw_cluster_stats(struct tsw_cluster *cl, struct tsw_cluster_stats *ret_stats)
{
	(void)cl;
	memset(ret_stats, 0, sizeof(*ret_stats));
}
