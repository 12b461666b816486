/* The cluster: vault changes replicated through NATS JetStream
 * (docs/cluster.md). One stream holds every change of the vault, each the
 * sealed write set of one vault write transaction (tsw/vault.h); tokvault
 * publishes a change and commits it locally only once JetStream
 * acknowledged it, and every node applies the stream, in order, to its
 * own copy of the vault, storing the last applied sequence in the same
 * transaction.
 *
 * Threads: a tsw_cluster handle is used by one thread at a time, except
 * tsw_cluster_stats(), which any thread may call while an applier runs.
 * Nothing here logs but the applier thread (events through on_event).
 */
#ifndef TSW_CLUSTER_H
#define TSW_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/vault.h"

#define TSW_CLUSTER_STREAM "TOKSWITCH_VAULT"
#define TSW_CLUSTER_SUBJECTS "tokswitch.vault.>"
/* Every change goes to this one subject: it names no token (a change may
 * hold thousands), and one subject keeps one order. */
#define TSW_CLUSTER_SUBJECT "tokswitch.vault.change"
#define TSW_CLUSTER_URL_MAX 1024
#define TSW_CLUSTER_NODE_MAX 64
#define TSW_CLUSTER_REPLICAS_MAX 5
#define TSW_CLUSTER_ACK_TIMEOUT_MS_DEFAULT 5000
#define TSW_CLUSTER_CONNECT_TIMEOUT_MS_DEFAULT 2000
#define TSW_CLUSTER_RETRY_MS_DEFAULT 1000
#define TSW_CLUSTER_HEARTBEAT_MS_DEFAULT 1000
/* NATS' default max_payload is 1 MiB; a change is refused above this */
#define TSW_CLUSTER_MAX_CHANGE_BYTES (1000u * 1000u)

struct tsw_cluster_config {
	const char *url;	     /* nats://HOST:PORT[,nats://HOST:PORT...] */
	const char *node;	     /* this node's name (NULL or "" for tokvault) */
	unsigned stream_replicas;    /* the stream's replicas when this creates it */
	unsigned ack_timeout_ms;     /* a publish waits this long for JetStream's ack */
	unsigned connect_timeout_ms; /* each server's connect */
	unsigned retry_ms;	     /* the applier's wait before it subscribes again */
	unsigned heartbeat_ms;	     /* the applier's consumer: idle heartbeat */
};

/* What the applier reports to its owner (on the applier's thread). */
enum tsw_cluster_event {
	TSW_CLUSTER_EV_CONNECTED,    /* subscribed from seq + 1 */
	TSW_CLUSTER_EV_DISCONNECTED, /* lost the server (libnats reconnects) */
	TSW_CLUSTER_EV_APPLY_FAILED, /* the change at seq failed (err): retried */
	TSW_CLUSTER_EV_SUBSCRIBE_FAILED,
	TSW_CLUSTER_EV_CONSUMER_RESET, /* libnats made the consumer again, from seq */
	TSW_CLUSTER_EV_MAX
};
typedef void (*tsw_cluster_event_fn)(void *ctx, enum tsw_cluster_event ev, uint64_t seq, int err,
				     const char *detail);

struct tsw_cluster_stats {
	uint64_t applied_seq;	  /* the vault's last applied sequence */
	uint64_t applied_total;	  /* changes this process applied */
	uint64_t apply_errors;	  /* changes that failed to apply (each retry counts) */
	uint64_t consumer_resets; /* the consumer made again by libnats (a gap) */
	int64_t last_publish_ns;  /* publish time of the last change applied (0: none) */
	bool caught_up;		  /* nothing was pending after the last one */
	bool connected;		  /* the connection is up */
};

struct tsw_cluster;

/* True when any server of url (a comma-separated list) is not tls://:
 * the changes, though sealed, can then be dropped or replayed on the
 * path. The caller warns. */
bool tsw_cluster_url_plaintext(const char *url);

/* Connects to the servers of c->url (comma-separated; the first that
 * answers) and makes sure the stream exists (created with
 * c->stream_replicas replicas, file storage, when absent). Reconnects by
 * itself afterwards. Returns 0, -EINVAL (bad config), -ECONNREFUSED or
 * -ETIMEDOUT (no server answered), -EIO (JetStream refused the stream),
 * -ENOMEM. why (cap bytes, may be NULL) gets the NATS error text. */
int tsw_cluster_open(const struct tsw_cluster_config *c, struct tsw_cluster **ret_cluster,
		     char *why, size_t cap);
/* Stops the applier if it runs, closes the connection. NULL: no-op. */
void tsw_cluster_close(struct tsw_cluster *cl);

/* Makes v publish through cl: every write transaction of v is published
 * as one change, with the stream's last sequence expected to be the one
 * v applied last (a change made on a stale copy is refused: -ESTALE), and
 * commits only once JetStream acknowledged it within the ack timeout
 * (else -ETIMEDOUT, or -EIO: refused; nothing is written). Call
 * tsw_cluster_catch_up first. Returns what tsw_vault_set_change_hook
 * returns. */
int tsw_cluster_publish_to(struct tsw_cluster *cl, struct tsw_vault *v);

/* The first publish refused (-ETIMEDOUT, -ESTALE, -EIO) since the last
 * call, 0 when none: what to tell the operator (a verb's own error is
 * the same code). */
int tsw_cluster_publish_error(struct tsw_cluster *cl);

/* Applies every change in the stream after v's last applied sequence,
 * up to the stream's last one, then returns; *ret_applied (may be NULL)
 * gets how many. Returns 0, -EIO (the stream could not be read), or the
 * error of tsw_vault_change_apply (the vault is left at the change
 * before). */
int tsw_cluster_catch_up(struct tsw_cluster *cl, struct tsw_vault *v, uint64_t *ret_applied);

/* Starts a thread that applies the stream to v as it grows, from v's
 * last applied sequence on, each change in its own transaction (readers
 * see it at their next renew). A change that fails to apply is counted,
 * reported and retried after retry_ms (the stream order is never
 * skipped). on_event may be NULL. Returns 0, -EALREADY, -errno. */
int tsw_cluster_applier_start(struct tsw_cluster *cl, struct tsw_vault *v,
			      tsw_cluster_event_fn on_event, void *ctx);

/* A consistent copy of the applier's figures (any thread). */
void tsw_cluster_stats(struct tsw_cluster *cl, struct tsw_cluster_stats *ret_stats);

#endif
