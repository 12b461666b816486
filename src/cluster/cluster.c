/* The cluster on NATS JetStream: one connection, the vault stream, the
 * publishing hook of tokvault and the applier of a node (tsw/cluster.h,
 * docs/cluster.md). */
#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsw/cluster.h"
#include "tsw/error.h"

#define NEXT_MSG_WAIT_MS 200 /* the applier looks at its stop flag this often */
#define MS_PER_S 1000
#define APPLY_BURST_MAX 256 /* changes applied in one vault transaction */

/* The delivered changes of one burst and what the stream said of each. */
struct burst {
	size_t n;
	natsMsg *m[APPLY_BURST_MAX];
	struct tsw_vault_sealed c[APPLY_BURST_MAX];
	int64_t publish_ns[APPLY_BURST_MAX];
	uint64_t pending[APPLY_BURST_MAX];
	uint64_t consumer_seq[APPLY_BURST_MAX];
};

struct tsw_cluster {
	struct tsw_cluster_config cfg;
	natsConnection *nc;
	jsCtx *js;
	/* the applier */
	struct tsw_vault *v;
	tsw_cluster_event_fn on_event;
	void *ctx;
	pthread_t thread;
	bool running;
	pthread_mutex_t lock; /* stats and stop */
	pthread_cond_t wake;
	bool stop;
	struct tsw_cluster_stats stats;
	int publish_error;     /* the first refused publish, until taken */
	uint64_t consumer_seq; /* of the last change delivered: 1 again after a reset */
	struct burst burst;    /* the applier's, kept here: 8 KiB off its stack */
};

static void set_why(char *why, size_t cap, natsStatus s)
{
	const char *last = nats_GetLastError(NULL);

	if (why && cap)
		snprintf(why, cap, "%s", last && *last ? last : natsStatus_GetText(s));
}

/* natsStatus has some fifty values: the few a caller acts on get their
 * own errno, the rest are -EIO (why says which) */
static int status_errno(natsStatus s)
{
	if (s == NATS_OK)
		return 0;
	if (s == NATS_NO_SERVER)
		return -ECONNREFUSED;
	if (s == NATS_TIMEOUT)
		return -ETIMEDOUT;
	if (s == NATS_NO_MEMORY)
		return -ENOMEM;
	if (s == NATS_INVALID_ARG)
		return -EINVAL;
	return -EIO;
}

static int connect_servers(struct tsw_cluster *cl, char *why, size_t cap)
{
	natsOptions *o = NULL;
	natsStatus s = natsOptions_Create(&o);

	if (s == NATS_OK)
		s = natsOptions_SetURL(o, cl->cfg.url);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, cl->cfg.connect_timeout_ms);
	/* a node keeps trying for ever; it reports itself disconnected meanwhile */
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, cl->cfg.retry_ms);
	if (s == NATS_OK)
		s = natsConnection_Connect(&cl->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK)
		set_why(why, cap, s);
	return status_errno(s);
}

static int ensure_stream(struct tsw_cluster *cl, char *why, size_t cap)
{
	const char *subjects[] = {TSW_CLUSTER_SUBJECTS};
	jsStreamInfo *si = NULL;
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus s;

	s = js_GetStreamInfo(&si, cl->js, TSW_CLUSTER_STREAM, NULL, &jerr);
	if (s == NATS_OK) {
		jsStreamInfo_Destroy(si);
		return 0;
	}
	if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
		set_why(why, cap, s);
		return status_errno(s);
	}
	jsStreamConfig_Init(&sc);
	sc.Name = TSW_CLUSTER_STREAM;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = cl->cfg.stream_replicas;
	s = js_AddStream(&si, cl->js, &sc, NULL, &jerr);
	if (s != NATS_OK) {
		set_why(why, cap, s);
		return -EIO;
	}
	jsStreamInfo_Destroy(si);
	return 0;
}

int tsw_cluster_open(const struct tsw_cluster_config *c, struct tsw_cluster **ret_cluster,
		     char *why, size_t cap)
{
	struct tsw_cluster *cl;
	jsOptions jo;
	int r;

	if (!c->url || !*c->url || strlen(c->url) > TSW_CLUSTER_URL_MAX || c->stream_replicas < 1 ||
	    c->stream_replicas > TSW_CLUSTER_REPLICAS_MAX || !c->ack_timeout_ms ||
	    !c->connect_timeout_ms || !c->retry_ms || !c->heartbeat_ms)
		return -EINVAL;
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	cl->cfg = *c;
	pthread_mutex_init(&cl->lock, NULL);
	pthread_cond_init(&cl->wake, NULL);
	r = connect_servers(cl, why, cap);
	if (r == 0) {
		jsOptions_Init(&jo);
		jo.Wait = c->ack_timeout_ms;
		natsStatus s = natsConnection_JetStream(&cl->js, cl->nc, &jo);

		r = status_errno(s);
	}
	if (r == 0)
		r = ensure_stream(cl, why, cap);
	if (r < 0) {
		tsw_cluster_close(cl);
		return r;
	}
	*ret_cluster = cl;
	return 0;
}

void tsw_cluster_close(struct tsw_cluster *cl)
{
	if (!cl)
		return;
	if (cl->running) {
		pthread_mutex_lock(&cl->lock);
		cl->stop = true;
		pthread_cond_signal(&cl->wake);
		pthread_mutex_unlock(&cl->lock);
		pthread_join(cl->thread, NULL);
	}
	jsCtx_Destroy(cl->js);
	if (cl->nc) {
		natsConnection_Close(cl->nc);
		natsConnection_Destroy(cl->nc);
	}
	pthread_cond_destroy(&cl->wake);
	pthread_mutex_destroy(&cl->lock);
	free(cl);
}

/* ---- publishing (tokvault) ---- */

static int publish_result(struct tsw_cluster *cl, int r)
{
	if (r < 0 && cl->publish_error == 0)
		cl->publish_error = r;
	return r;
}

static int publish_change(void *ctx, const struct tsw_vault_change *c, uint64_t *ret_seq)
{
	struct tsw_cluster *cl = ctx;
	jsPubOptions po;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	jsPubOptions_Init(&po);
	po.MaxWait = cl->cfg.ack_timeout_ms;
	/* a retried publish of the same change is stored once */
	po.MsgId = c->id;
	/* a change made on a copy that missed one is refused, not stored */
	po.ExpectLastSeq = c->prev_seq;
	s = js_Publish(&pa, cl->js, TSW_CLUSTER_SUBJECT, c->sealed, (int)c->len, &po, &jerr);
	if (s != NATS_OK) {
		if (jerr == JSStreamWrongLastSequenceErr)
			return publish_result(cl, -ESTALE);
		return publish_result(cl, s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS ||
						  s == NATS_CONNECTION_CLOSED
					      ? -ETIMEDOUT
					      : -EIO);
	}
	*ret_seq = pa->Sequence;
	jsPubAck_Destroy(pa);
	return 0;
}

int tsw_cluster_publish_to(struct tsw_cluster *cl, struct tsw_vault *v)
{
	size_t max = natsConnection_GetMaxPayload(cl->nc) > 0
			 ? (size_t)natsConnection_GetMaxPayload(cl->nc)
			 : TSW_CLUSTER_MAX_CHANGE_BYTES;

	if (max > TSW_CLUSTER_MAX_CHANGE_BYTES)
		max = TSW_CLUSTER_MAX_CHANGE_BYTES;
	return tsw_vault_set_change_hook(v, publish_change, cl, max);
}

int tsw_cluster_publish_error(struct tsw_cluster *cl)
{
	int r = cl->publish_error;

	cl->publish_error = 0;
	return r;
}

/* ---- catching up (tokvault, before a change) ---- */

int tsw_cluster_catch_up(struct tsw_cluster *cl, struct tsw_vault *v, uint64_t *ret_applied)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	uint64_t have = 0, last, n = 0;
	natsStatus s;
	int r;

	r = tsw_vault_change_seq(v, &have);
	if (r < 0)
		return r;
	s = js_GetStreamInfo(&si, cl->js, TSW_CLUSTER_STREAM, NULL, &jerr);
	if (s != NATS_OK)
		return status_errno(s) == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
	last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	for (uint64_t seq = have + 1; seq <= last; seq++) {
		natsMsg *m = NULL;

		s = js_GetMsg(&m, cl->js, TSW_CLUSTER_STREAM, seq, NULL, &jerr);
		if (s != NATS_OK)
			return -EIO; /* a change no longer in the stream: sync from a snapshot */
		r = tsw_vault_change_apply(v, (const uint8_t *)natsMsg_GetData(m),
					   (size_t)natsMsg_GetDataLength(m), seq);
		natsMsg_Destroy(m);
		if (r < 0)
			return r;
		n += r == 0;
	}
	if (ret_applied)
		*ret_applied = n;
	return 0;
}

/* ---- the applier (a node) ---- */

static void report(struct tsw_cluster *cl, enum tsw_cluster_event ev, uint64_t seq, int err,
		   const char *detail)
{
	if (cl->on_event)
		cl->on_event(cl->ctx, ev, seq, err, detail);
}

/* Waits retry_ms or until stopped; true when stopped. */
static bool pause_or_stop(struct tsw_cluster *cl)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += cl->cfg.retry_ms / MS_PER_S;
	ts.tv_nsec += (long)(cl->cfg.retry_ms % MS_PER_S) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&cl->lock);
	while (!cl->stop && pthread_cond_timedwait(&cl->wake, &cl->lock, &ts) == 0)
		;
	stop = cl->stop;
	pthread_mutex_unlock(&cl->lock);
	return stop;
}

static bool stopping(struct tsw_cluster *cl)
{
	bool stop;

	pthread_mutex_lock(&cl->lock);
	stop = cl->stop;
	pthread_mutex_unlock(&cl->lock);
	return stop;
}

/* An ordered consumer (in order, no acks, recreated by libnats on a gap)
 * from the vault's next sequence: the vault, not the server, remembers
 * where this node is. */
static int subscribe(struct tsw_cluster *cl, natsSubscription **ret_sub)
{
	jsSubOptions so;
	jsErrCode jerr = 0;
	uint64_t have = 0;
	natsStatus s;
	int r = tsw_vault_change_seq(cl->v, &have);

	if (r < 0)
		return r;
	pthread_mutex_lock(&cl->lock);
	cl->stats.applied_seq = have;
	pthread_mutex_unlock(&cl->lock);
	jsSubOptions_Init(&so);
	so.Stream = TSW_CLUSTER_STREAM;
	so.Ordered = true;
	/* a delivery lost on the way shows at the next heartbeat at the
	 * latest (libnats then makes the consumer again): this bounds how
	 * long a node can stay behind without knowing (5 s by default) */
	so.Config.Heartbeat = (int64_t)cl->cfg.heartbeat_ms * 1000000;
	if (have > 0) {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = have + 1;
	} else {
		so.Config.DeliverPolicy = js_DeliverAll;
	}
	s = js_SubscribeSync(ret_sub, cl->js, TSW_CLUSTER_SUBJECT, NULL, &so, &jerr);
	if (s != NATS_OK) {
		report(cl, TSW_CLUSTER_EV_SUBSCRIBE_FAILED, have, status_errno(s),
		       natsStatus_GetText(s));
		return status_errno(s);
	}
	cl->consumer_seq = 0;
	report(cl, TSW_CLUSTER_EV_CONNECTED, have, 0, NULL);
	return 0;
}

/* first and whatever else the subscription holds already (no wait): a
 * node behind applies them in one transaction. */
static int take_burst(natsSubscription *sub, natsMsg *first, struct burst *b)
{
	int queued = 0, bytes = 0;

	b->n = 0;
	b->m[b->n++] = first;
	if (natsSubscription_GetPending(sub, &queued, &bytes) != NATS_OK)
		queued = 0;
	while (b->n < APPLY_BURST_MAX && queued-- > 0) {
		natsMsg *m = NULL;

		if (natsSubscription_NextMsg(&m, sub, 1) != NATS_OK)
			break;
		b->m[b->n++] = m;
	}
	for (size_t i = 0; i < b->n; i++) {
		jsMsgMetaData *meta = NULL;

		if (natsMsg_GetMetaData(&meta, b->m[i]) != NATS_OK)
			return -EIO;
		b->c[i] = (struct tsw_vault_sealed){
		    .bytes = (const uint8_t *)natsMsg_GetData(b->m[i]),
		    .len = (size_t)natsMsg_GetDataLength(b->m[i]),
		    .seq = meta->Sequence.Stream,
		};
		b->publish_ns[i] = meta->Timestamp;
		b->pending[i] = meta->NumPending;
		b->consumer_seq[i] = meta->Sequence.Consumer;
		jsMsgMetaData_Destroy(meta);
	}
	return 0;
}

static void burst_free(struct burst *b)
{
	for (size_t i = 0; i < b->n; i++)
		natsMsg_Destroy(b->m[i]);
	b->n = 0;
}

/* Applies b->c[0, n) in one transaction, or one by one when that fails
 * (the failing change is reported, the ones before it stay applied).
 * Returns 0, or the error: the caller subscribes again from the vault. */
static int apply_burst(struct tsw_cluster *cl, struct burst *b)
{
	size_t applied = 0, done = b->n;
	bool reset = cl->consumer_seq > 0 && b->consumer_seq[0] <= cl->consumer_seq;
	int r;

	/* libnats made the consumer again (a gap it saw, heartbeats missed):
	 * its sequence starts over */
	cl->consumer_seq = b->consumer_seq[b->n - 1];
	if (reset) {
		pthread_mutex_lock(&cl->lock);
		cl->stats.consumer_resets++;
		pthread_mutex_unlock(&cl->lock);
		report(cl, TSW_CLUSTER_EV_CONSUMER_RESET, b->c[0].seq, 0, NULL);
	}
	r = tsw_vault_changes_apply(cl->v, b->c, b->n, &applied);

	if (r < 0) {
		applied = 0;
		for (done = 0; done < b->n; done++) {
			r = tsw_vault_change_apply(cl->v, b->c[done].bytes, b->c[done].len,
						   b->c[done].seq);
			if (r < 0)
				break;
			applied += r == 0;
		}
	}
	pthread_mutex_lock(&cl->lock);
	if (done > 0) {
		if (b->c[done - 1].seq > cl->stats.applied_seq)
			cl->stats.applied_seq = b->c[done - 1].seq;
		cl->stats.last_publish_ns = b->publish_ns[done - 1];
		cl->stats.caught_up = b->pending[done - 1] == 0;
	}
	cl->stats.applied_total += applied;
	if (r < 0)
		cl->stats.apply_errors++;
	pthread_mutex_unlock(&cl->lock);
	if (r < 0)
		report(cl, TSW_CLUSTER_EV_APPLY_FAILED, b->c[done].seq, r, NULL);
	return r < 0 ? r : 0;
}

static void *applier_main(void *arg)
{
	struct tsw_cluster *cl = arg;
	natsSubscription *sub = NULL;
	bool was_connected = true;

	while (!stopping(cl)) {
		natsMsg *m = NULL;
		natsStatus s;

		if (!sub && subscribe(cl, &sub) < 0) {
			sub = NULL;
			if (pause_or_stop(cl))
				break;
			continue;
		}
		s = natsSubscription_NextMsg(&m, sub, NEXT_MSG_WAIT_MS);
		if (s == NATS_TIMEOUT) {
			bool up = natsConnection_Status(cl->nc) == NATS_CONN_STATUS_CONNECTED;

			if (was_connected && !up)
				report(cl, TSW_CLUSTER_EV_DISCONNECTED, 0, -ECONNRESET, NULL);
			was_connected = up;
			continue;
		}
		if (s == NATS_OK) {
			int r = take_burst(sub, m, &cl->burst);

			if (r == 0)
				r = apply_burst(cl, &cl->burst);
			burst_free(&cl->burst);
			if (r == 0)
				continue;
		}
		/* start again from what the vault holds */
		natsSubscription_Destroy(sub);
		sub = NULL;
		if (pause_or_stop(cl))
			break;
	}
	natsSubscription_Destroy(sub);
	return NULL;
}

int tsw_cluster_applier_start(struct tsw_cluster *cl, struct tsw_vault *v,
			      tsw_cluster_event_fn on_event, void *ctx)
{
	int r;

	if (cl->running)
		return -EALREADY;
	cl->v = v;
	cl->on_event = on_event;
	cl->ctx = ctx;
	r = tsw_vault_change_seq(v, &cl->stats.applied_seq);
	if (r < 0)
		return r;
	r = pthread_create(&cl->thread, NULL, applier_main, cl);
	if (r)
		return -r;
	cl->running = true;
	return 0;
}

void tsw_cluster_stats(struct tsw_cluster *cl, struct tsw_cluster_stats *ret_stats)
{
	pthread_mutex_lock(&cl->lock);
	*ret_stats = cl->stats;
	pthread_mutex_unlock(&cl->lock);
	ret_stats->connected = natsConnection_Status(cl->nc) == NATS_CONN_STATUS_CONNECTED;
}
