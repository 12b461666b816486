/* Prometheus text exposition of the summed worker shards and the state's
 * counters. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/authz.h"
#include "tsw/ctl.h"
#include "tsw/hsm.h"
#include "tsw/metrics.h"
#include "tsw/state.h"

/* tsw/metrics.h sizes a shard's declines[] without authz.h; the loop
 * below reads one counter per authz reason */
_Static_assert((int)TSW_METRICS_DECLINE_REASONS == (int)TSW_AUTHZ_REASON_MAX,
	       "a shard's declines[] has a counter per authz reason");

enum { TEXT_INITIAL_BYTES = 32 * 1024 };

struct text {
	char *p;
	size_t len, cap;
	bool failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		char *np = realloc(t->p, t->cap * 2);

		if (!np) {
			t->failed = true;
			return;
		}
		t->p = np;
		t->cap *= 2;
	}
}

/* A label value as the text format wants it: a backslash, a double
 * quote and a line feed escaped, so a configured name cannot end the
 * label (or the line) early. */
static void put_label_value(struct text *t, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			put(t, "\\%c", *v);
		else if (*v == '\n')
			put(t, "\\n");
		else
			put(t, "%c", *v);
	}
}

/* The labels of issuer link l: its index, the issuer it serves and its
 * configured host (an IPv6 address in brackets): a fixed set per start. */
static void put_link_labels(struct text *t, const struct tsw_ctl_source *src, uint32_t l)
{
	const struct tsw_config_host *h = &src->links[l];
	bool v6 = strchr(h->addr.host, ':') != NULL;

	put(t, "link=\"%u\",issuer=\"%u\",host=\"%s", l, (unsigned)h->issuer, v6 ? "[" : "");
	put_label_value(t, h->addr.host);
	put(t, "%s:%u\"", v6 ? "]" : "", (unsigned)h->addr.port);
}

/* Reads a counter a worker writes (tsw/metrics.h: one writer per shard). */
static uint64_t rd(const uint64_t *p)
{
	return tsw_metric_load(p);
}

static void sum_hist(const struct tsw_ctl_source *src, size_t off, struct tsw_hist *h)
{
	memset(h, 0, sizeof(*h));
	for (uint32_t s = 0; s < src->n_shards; s++) {
		const struct tsw_hist *x = (const void *)((const char *)src->shards[s] + off);

		for (unsigned i = 0; i < TSW_HIST_BUCKETS; i++)
			h->bucket[i] += rd(&x->bucket[i]);
		h->count += rd(&x->count);
		h->sum_us += rd(&x->sum_us);
	}
}

static void put_hist(struct text *t, const char *name, const char *help, const struct tsw_hist *h)
{
	uint64_t cum = 0;

	put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (unsigned i = 0; i < TSW_HIST_BUCKETS; i++) {
		cum += h->bucket[i];
		if (i == TSW_HIST_BUCKETS - 1)
			put(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
		else
			put(t, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
			    (double)tsw_hist_bound_us[i] / 1e6, cum);
	}
	put(t, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name, (double)h->sum_us / 1e6, name,
	    h->count);
}

#define SUM(field)                                                                                 \
	({                                                                                         \
		uint64_t s_ = 0;                                                                   \
		for (uint32_t i_ = 0; i_ < src->n_shards; i_++)                                    \
			s_ += rd(&src->shards[i_]->field);                                         \
		s_;                                                                                \
	})

struct scalar {
	const char *name;
	const char *type;
	const char *help;
	size_t off;
};

#define SC(n, t, h, f)                                                                             \
	{                                                                                          \
		n, t, h, offsetof(struct tsw_metrics_shard, f)                                     \
	}

static const struct scalar scalars[] = {
    SC("tokswitch_log_events_suppressed_total", "counter",
       "Engine events past server.log_event_burst: counted in the next line of their kind.",
       events_suppressed),
    SC("tokswitch_log_events_dropped_total", "counter",
       "Engine events dropped: server.log_event_queue was full (an events_dropped line).",
       events_dropped),
    SC("tokswitch_inflight", "gauge", "Requests waiting on an issuer.", inflight),
    SC("tokswitch_pending_full_total", "counter",
       "Requests refused because the pending table was full.", pending_full),
    SC("tokswitch_timeouts_total", "counter", "Issuer requests that timed out (answered 91).",
       timeouts),
    SC("tokswitch_late_answers_total", "counter",
       "Issuer answers that arrived after their timeout.", late_answers),
    SC("tokswitch_unmatched_answers_total", "counter", "Issuer answers matching no request.",
       unmatched_answers),
    SC("tokswitch_connections_open", "gauge", "Open acquirer connections.", conns_open),
    SC("tokswitch_connections_accepted_total", "counter", "Acquirer connections accepted.",
       conns_accepted),
    SC("tokswitch_connections_refused_total", "counter",
       "Acquirer connections closed at once: limits.max_conns reached.", conns_refused),
    SC("tokswitch_connections_idle_closed_total", "counter",
       "Acquirer connections closed by limits.idle_timeout_ms.", conns_idle_closed),
    SC("tokswitch_frames_refused_total", "counter",
       "Frames above limits.max_frame or with a broken length header.", frames_refused),
    SC("tokswitch_format_errors_total", "counter", "Messages that could not be decoded.",
       format_errors),
    SC("tokswitch_backpressure_pauses_total", "counter",
       "Times a connection stopped being read (limits.max_inflight_per_conn).",
       backpressure_pauses),
    SC("tokswitch_vault_lookups_total", "counter", "Vault token lookups.", vault_lookups),
    SC("tokswitch_vault_errors_total", "counter", "Vault lookups that failed (corrupt, decrypt).",
       vault_errors),
    SC("tokswitch_vault_integrity_failures_total", "counter",
       "Vault records failing authentication (edited in data.mdb): declined 96 VAULT_INTEGRITY.",
       vault_integrity_failures),
    SC("tokswitch_vault_keys_refused_total", "counter",
       "Key file reloads refused: a new key differs from the vault's check value, or the file "
       "lacks the vault's current key; the keys loaded before stay.",
       vault_keys_refused),
    SC("tokswitch_received_bytes_total", "counter", "Bytes received on every endpoint.", bytes_in),
    SC("tokswitch_sent_bytes_total", "counter", "Bytes sent on every endpoint.", bytes_out),
    SC("tokswitch_forwarded_total", "counter", "Requests sent to an issuer.", forwarded),
    SC("tokswitch_no_route_total", "counter", "Requests with no route for the PAN's BIN (96).",
       no_route),
    SC("tokswitch_link_out_full_total", "counter",
       "Requests refused: issuer link output full (91).", link_out_full),
    SC("tokswitch_answers_conn_gone_total", "counter",
       "Answers dropped: the acquirer connection had closed.", answers_conn_gone),
    SC("tokswitch_issuer_format_errors_total", "counter",
       "Issuer messages that could not be decoded or re-encoded.", issuer_format_errors),
    SC("tokswitch_park_timeouts_total", "counter",
       "Limited-use requests parked past the issuer timeout (answered 96).", park_timeouts),
    SC("tokswitch_duplicates_refused_total", "counter",
       "Requests with the DE11 and DE7 of one in flight on the same connection (answered 94).",
       duplicates_refused),
    SC("tokswitch_acq_reversals_matched_total", "counter",
       "Acquirer reversals whose DE90 was rewritten to the switch STAN.", acq_reversals_matched),
    SC("tokswitch_pan_leaks_blocked_total", "counter",
       "Issuer answers still holding the PAN after rewrite (sent 96 instead).", pan_leaks_blocked),
    SC("tokswitch_issuer_frames_too_big_total", "counter",
       "Requests whose issuer copy (PAN, DE48 token data) is above the issuer profile's frame "
       "or what its length header can say (answered 96, never sent).",
       issuer_frames_too_big),
    SC("tokswitch_issuer_answer_mti_mismatches_total", "counter",
       "Issuer answers whose MTI is not the response to the request's (dropped; the request "
       "keeps waiting).",
       answer_mti_mismatches),
    SC("tokswitch_answer_de55_tags_stripped_total", "counter",
       "Card-data tags (5A, 57, 5F24, 9F6B) removed from the DE55 of issuer answers.",
       de55_tags_stripped),
    SC("tokswitch_answer_de55_dropped_total", "counter",
       "Issuer answers whose DE55 is not BER-TLV: sent to the acquirer without DE55.",
       de55_dropped),
    SC("tokswitch_slow_consumer_closes_total", "counter",
       "Acquirer connections closed because their output was full.", slow_consumer_closes),
    SC("tokswitch_stash_overflows_total", "counter",
       "Acquirer connections closed for sending too much while paused.", stash_overflows),
    SC("tokswitch_signon_failures_total", "counter", "Issuer sign-ons refused or not sendable.",
       signon_failures),
    SC("tokswitch_echo_timeouts_total", "counter", "Issuer echoes unanswered.", echo_timeouts),
    SC("tokswitch_parked", "gauge", "Limited-use requests waiting for a durable use.", parked),
    SC("tokswitch_parked_full_total", "counter", "Requests refused: too many parked (96).",
       parked_full),
    SC("tokswitch_cryptogram_keys_untried_total", "counter",
       "Cryptogram or PIN checks that failed with older keys left untried "
       "(cryptogram.max_keys_tried).",
       cryptogram_keys_untried),
    SC("tokswitch_saf_depth", "gauge", "Reversals queued (not yet acked).", saf_depth),
    SC("tokswitch_saf_sent_total", "counter", "Reversals sent.", saf_sent),
    SC("tokswitch_saf_acked_total", "counter", "Reversals answered by the issuer.", saf_acked),
    SC("tokswitch_saf_declined_total", "counter",
       "Reversals and advices the issuer answered with neither 00 nor a repeat code: settled, "
       "their limited use kept spent.",
       saf_declined),
    SC("tokswitch_saf_dropped_total", "counter",
       "Reversals not queued (queue full, no state) or token gone.", saf_dropped),
    SC("tokswitch_saf_retried_total", "counter",
       "Reversals unanswered, link down or unsendable: due again later.", saf_retried),
    SC("tokswitch_saf_inflight", "gauge", "Reversals awaiting an issuer answer.", saf_inflight),
    SC("tokswitch_answers_held", "gauge",
       "Answers (91, 96) waiting for the commit of the reversal they leave behind.", answers_held),
    SC("tokswitch_answers_held_timeouts_total", "counter",
       "Held answers sent after saf.durable_wait_ms without their reversal's commit.",
       answers_held_timeouts),
    SC("tokswitch_answers_awaiting_record", "gauge",
       "Issuer approvals waiting for the limited use or ATC they spent to be durable.",
       answers_awaiting_record),
    SC("tokswitch_answers_record_timeouts_total", "counter",
       "Approvals whose limited use or ATC was not durable within saf.durable_wait_ms: "
       "reversed, answered 96.",
       answers_record_timeouts),
    SC("tokswitch_standin_advices_queued_total", "counter",
       "Stand-in approvals whose advice (0120/0220) was put in the SAF queue.",
       standin_advices_queued),
    SC("tokswitch_arpc_total", "counter",
       "Issuer answers to a verified ARQC sent to the acquirer with tag 91 (the ARPC).", arpcs),
    SC("tokswitch_arpc_failures_total", "counter",
       "Issuer answers that owed a tag 91 and went without it (HSM error, no room in DE55).",
       arpc_failures),
    SC("tokswitch_standin_exposure_full_total", "counter",
       "Stand-ins refused (91): the exposure table (standin.max_tokens) had no room.",
       standin_exposure_full),
    SC("tokswitch_recv_bufs_held", "gauge",
       "Receive buffers held for paused connections (io_uring backend).", recv_bufs_held),
    SC("tokswitch_workers_ready", "gauge", "Workers whose engine is ready.", ready),
    SC("tokswitch_acq_reversals_capacity", "gauge",
       "Originals kept for acquirer reversals, all workers (limits.acq_reversal_memory each).",
       acq_reversals_capacity),
    SC("tokswitch_acq_reversals_evicted_total", "counter",
       "Originals pushed out by newer ones: a later reversal goes with DE90 as it came.",
       acq_reversals_evicted),
    SC("tokswitch_expired_stans_capacity", "gauge",
       "Timed-out STANs kept for late answers, all workers (limits.expired_stan_memory each).",
       expired_stans_capacity),
    SC("tokswitch_expired_stans_evicted_total", "counter",
       "Timed-out STANs pushed out by newer ones: a late answer is then counted unmatched.",
       expired_stans_evicted),
    SC("tokswitch_issuer_requests_rerouted_total", "counter",
       "Requests not yet sent when their issuer link went down, sent on another host of the "
       "issuer instead of a 91.",
       requests_rerouted),
};

#define ST(n, t, h, f)                                                                             \
	{                                                                                          \
		n, t, h, offsetof(struct tsw_state_stats, f)                                       \
	}

/* tsw_state_stats(): one environment shared by every worker, read at
 * scrape time. The _capacity gauges are the configured limits ([state]);
 * the _full counters show them being hit. */
static const struct scalar state_scalars[] = {
    ST("tokswitch_state_queue_length", "gauge", "Updates waiting for the state's writer thread.",
       queue_len),
    ST("tokswitch_state_queue_capacity", "gauge",
       "state.queue_size: updates the writer queue holds.", queue_cap),
    ST("tokswitch_state_queue_full_total", "counter",
       "State updates refused: writer queue full (answered 96).", queue_full),
    ST("tokswitch_state_tokens", "gauge", "Tokens with a count or an ATC in the state's table.",
       tokens),
    ST("tokswitch_state_tokens_capacity", "gauge",
       "Token table capacity (state.max_tokens + loaded).", tokens_cap),
    ST("tokswitch_state_table_full_total", "counter", "State updates refused: token table full.",
       table_full),
    ST("tokswitch_state_reservations", "gauge", "Outstanding limited-use reservations.",
       reservations),
    ST("tokswitch_state_reservations_capacity", "gauge", "state.max_reservations.",
       reservations_cap),
    ST("tokswitch_state_tickets_full_total", "counter",
       "Reservations refused: ticket table full (answered 96).", tickets_full),
    ST("tokswitch_state_reserve_ok_total", "counter", "Limited uses reserved.", reserve_ok),
    ST("tokswitch_state_reserve_exhausted_total", "counter",
       "Reservations refused: uses exhausted (DOMAIN_USES).", reserve_exhausted),
    ST("tokswitch_state_uses_committed_total", "counter", "Reserved uses the issuer approved.",
       commits),
    ST("tokswitch_state_releases_total", "counter", "Reserved uses given back.", releases),
    ST("tokswitch_state_uses_returned_total", "counter",
       "Committed uses given back: the issuer approved the acquirer's reversal.", uses_returned),
    ST("tokswitch_state_release_unqueued_total", "counter",
       "Uses given back in memory only: writer queue full.", release_unqueued),
    ST("tokswitch_state_atc_ok_total", "counter", "ATCs accepted.", atc_ok),
    ST("tokswitch_state_atc_replayed_total", "counter", "ATCs refused as replayed (CRYPTOGRAM).",
       atc_replayed),
    ST("tokswitch_state_batches_total", "counter", "Group commits (LMDB transactions).", batches),
    ST("tokswitch_state_batch_ops_total", "counter", "Updates written by group commits.",
       batch_ops),
    ST("tokswitch_state_batch_max", "gauge", "Largest group commit so far, in updates.", batch_max),
    ST("tokswitch_state_commit_errors_total", "counter", "Group commits that failed (retried).",
       commit_errors),
    ST("tokswitch_state_saf_depth", "gauge", "Reversals in the store-and-forward queue.",
       saf_depth),
    ST("tokswitch_state_saf_capacity", "gauge", "state.saf_max_entries.", saf_cap),
    ST("tokswitch_state_saf_full_total", "counter", "Reversals refused: queue full.", saf_full),
    ST("tokswitch_state_saf_too_big_total", "counter", "Reversals refused: message too big.",
       saf_too_big),
    ST("tokswitch_state_saf_puts_total", "counter", "Reversals queued.", saf_puts),
    ST("tokswitch_state_saf_acks_total", "counter", "Reversals settled and removed.", saf_acks),
    ST("tokswitch_state_saf_retries_total", "counter", "Reversals given back for a later retry.",
       saf_retries),
    ST("tokswitch_state_saf_claims_total", "counter", "Reversals handed out to workers.",
       saf_claims),
    ST("tokswitch_state_saf_lease_expired_total", "counter",
       "Reversals handed out again after state.saf_lease_ms ran out.", saf_lease_expired),
    ST("tokswitch_state_saf_loaded", "gauge", "Reversals found in the queue at start.", saf_loaded),
    ST("tokswitch_state_saf_uses_returned_total", "counter",
       "Limited uses given back when the reversal of an undelivered approval was acked.",
       saf_uses_returned),
    ST("tokswitch_state_saf_refused_total", "counter",
       "Reversals refused: the state writer is degraded (full map or disk).", saf_refused),
    ST("tokswitch_state_reserve_refused_total", "counter",
       "Limited uses refused: the state writer is degraded (96 STATE_UNAVAILABLE).",
       reserve_refused),
    ST("tokswitch_state_writer_degradations_total", "counter",
       "Times the state writer became degraded (full map or disk, I/O error).", writer_degraded),
    ST("tokswitch_state_writer_held", "gauge",
       "Updates the degraded state writer holds back until space returns.", writer_held),
    ST("tokswitch_state_writer_freeing_commits_total", "counter",
       "Commits of the space-freeing updates alone (SAF deletes, counts) while degraded.",
       freeing_commits),
};

/* The cluster's applier (the owner's callback); zeros on a node without
 * --cluster, so dashboards and alerts see the same series everywhere. */
static void put_cluster(struct text *t, const struct tsw_ctl_source *src)
{
	struct tsw_ctl_cluster_values c = {0};

	if (src->cluster)
		src->cluster(src->ctx, &c);
	put(t,
	    "# HELP tokswitch_cluster_applied_sequence The last stream sequence applied to the "
	    "vault.\n# TYPE tokswitch_cluster_applied_sequence gauge\n"
	    "tokswitch_cluster_applied_sequence %" PRIu64 "\n",
	    c.applied_sequence);
	put(t,
	    "# HELP tokswitch_cluster_lag_seconds Now minus the publish time of the last change "
	    "applied, while more were pending behind it; 0 when caught up.\n"
	    "# TYPE tokswitch_cluster_lag_seconds gauge\ntokswitch_cluster_lag_seconds %.3f\n",
	    c.lag_seconds);
	put(t,
	    "# HELP tokswitch_cluster_apply_errors_total Changes that failed to apply (each "
	    "retry counts).\n# TYPE tokswitch_cluster_apply_errors_total counter\n"
	    "tokswitch_cluster_apply_errors_total %" PRIu64 "\n",
	    c.apply_errors);
	put(t,
	    "# HELP tokswitch_cluster_consumer_resets_total The node's consumer made again by "
	    "libnats after a gap.\n# TYPE tokswitch_cluster_consumer_resets_total counter\n"
	    "tokswitch_cluster_consumer_resets_total %" PRIu64 "\n",
	    c.consumer_resets);
	put(t,
	    "# HELP tokswitch_cluster_connected 1 while the connection to NATS is up.\n"
	    "# TYPE tokswitch_cluster_connected gauge\ntokswitch_cluster_connected %d\n",
	    c.connected);
	put(t,
	    "# HELP tokswitch_cluster_plaintext 1 when the cluster url is plain text (no TLS).\n"
	    "# TYPE tokswitch_cluster_plaintext gauge\ntokswitch_cluster_plaintext %d\n",
	    c.plaintext);
}

/* tsw_hsm_soft_stats(): the key memory shared by every worker. */
static void put_hsm(struct text *t, const struct tsw_hsm *h)
{
	struct tsw_hsm_soft_stats hs;
	const struct {
		const char *name, *type, *help;
	} rows[] = {
	    {
		"tokswitch_hsm_keys",
		"gauge",
		"Keys the HSM holds now (the card keys, and session keys being derived).",
	    },
	    {
		"tokswitch_hsm_key_full_total",
		"counter",
		"Key imports or derivations refused: hsm.max_keys held.",
	    },
	    {
		"tokswitch_hsm_icc_cache_hits_total",
		"counter",
		"Cryptograms whose ICC master key was cached.",
	    },
	    {
		"tokswitch_hsm_icc_cache_misses_total",
		"counter",
		"Cryptograms whose ICC master key was derived (and cached, hsm.icc_cache_entries).",
	    },
	    {
		"tokswitch_hsm_icc_cache_entries_used",
		"gauge",
		"ICC master keys in the cache now (freeing an IMK wipes those derived under it).",
	    },
	    {
		"tokswitch_hsm_memory_locked",
		"gauge",
		"1 when the key memory is locked (mlock); 0: RLIMIT_MEMLOCK refused, keys may be "
		"swapped.",
	    },
	};
	uint64_t v[6];

	if (!h || tsw_hsm_soft_stats(h, &hs) < 0)
		return;
	v[0] = hs.keys_in_use;
	v[1] = hs.key_full;
	v[2] = hs.icc_cache_hits;
	v[3] = hs.icc_cache_misses;
	v[4] = hs.icc_cache_used;
	v[5] = hs.locked;
	_Static_assert(sizeof(v) / sizeof(v[0]) == sizeof(rows) / sizeof(rows[0]),
		       "one value a row");
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		put(t, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", rows[i].name, rows[i].help,
		    rows[i].name, rows[i].type, rows[i].name, v[i]);
}

static void put_state(struct text *t, const struct tsw_state *st)
{
	uint64_t oldest_rev_ms, oldest_adv_ms;
	struct tsw_state_stats ss;

	put(t,
	    "# HELP tokswitch_state_open 1 when the switch runs with a state directory.\n"
	    "# TYPE tokswitch_state_open gauge\ntokswitch_state_open %d\n",
	    st != NULL);
	put(t,
	    "# HELP tokswitch_durable 1 when reversals and limited-use counts are kept on disk "
	    "(--state), "
	    "0 with --no-state.\n# TYPE tokswitch_durable gauge\ntokswitch_durable %d\n",
	    st != NULL);
	if (!st)
		return;
	tsw_state_stats(st, &ss);
	for (size_t i = 0; i < sizeof(state_scalars) / sizeof(state_scalars[0]); i++) {
		const struct scalar *s = &state_scalars[i];
		uint64_t v = *(const uint64_t *)(const void *)((const char *)&ss + s->off);

		put(t, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", s->name, s->help, s->name,
		    s->type, s->name, v);
	}
	put(t,
	    "# HELP tokswitch_state_writer_degraded 1 while the state writer cannot commit what "
	    "grows "
	    "the file (/readyz says why).\n"
	    "# TYPE tokswitch_state_writer_degraded gauge\ntokswitch_state_writer_degraded %d\n",
	    ss.writer_health != TSW_STATE_HEALTHY);
	put(t,
	    "# HELP tokswitch_state_commit_seconds_total Time in group-commit writes and fsync.\n"
	    "# TYPE tokswitch_state_commit_seconds_total "
	    "counter\ntokswitch_state_commit_seconds_total %.6f\n",
	    (double)ss.commit_ns_total / 1e9);
	put_hist(t, "tokswitch_state_commit_duration_seconds",
		 "Group commits' write and fsync, failed ones too.", &ss.commit_duration);
	tsw_state_saf_oldest(st, &oldest_rev_ms, &oldest_adv_ms);
	put(t,
	    "# HELP tokswitch_state_saf_oldest_age_seconds Age of the oldest queued reversal and "
	    "of the "
	    "oldest queued stand-in advice (0: none queued).\n"
	    "# TYPE tokswitch_state_saf_oldest_age_seconds gauge\n"
	    "tokswitch_state_saf_oldest_age_seconds{kind=\"reversal\"} %.3f\n"
	    "tokswitch_state_saf_oldest_age_seconds{kind=\"advice\"} %.3f\n",
	    (double)oldest_rev_ms / 1e3, (double)oldest_adv_ms / 1e3);
}

/* Requests answered, declined, undelivered and stood in for, by label. */
static void put_requests(struct text *t, const struct tsw_ctl_source *src)
{
	put(t,
	    "# HELP tokswitch_requests_total Requests answered, by MTI class and response code.\n"
	    "# TYPE tokswitch_requests_total counter\n");
	for (unsigned m = 0; m < TSW_MTI_CLASS_MAX; m++) {
		for (unsigned r = 0; r < TSW_METRICS_RC_MAX; r++) {
			uint64_t v = SUM(requests[m][r]);

			if (v)
				put(t,
				    "tokswitch_requests_total{mti=\"%s\",rc=\"%s\"} %" PRIu64 "\n",
				    tsw_metrics_mti_name(m), tsw_metrics_rc_name(r), v);
		}
	}
	put(t,
	    "# HELP tokswitch_declines_total Requests declined by the switch, by reason (DE44).\n"
	    "# TYPE tokswitch_declines_total counter\n");
	for (unsigned r = 0; r < TSW_AUTHZ_REASON_MAX; r++)
		if (tsw_authz_is_decline((enum tsw_authz_reason)r))
			put(t, "tokswitch_declines_total{reason=\"%s\"} %" PRIu64 "\n",
			    tsw_authz_reason_name((enum tsw_authz_reason)r), SUM(declines[r]));

	put(t,
	    "# HELP tokswitch_answers_undelivered_total Approvals the acquirer never got, by what "
	    "the switch did: reversed (a reversal queued) or unqueued (the queue refused it).\n"
	    "# TYPE tokswitch_answers_undelivered_total counter\n"
	    "tokswitch_answers_undelivered_total{action=\"reversed\"} %" PRIu64 "\n"
	    "tokswitch_answers_undelivered_total{action=\"unqueued\"} %" PRIu64 "\n",
	    SUM(answers_undelivered_reversed), SUM(answers_undelivered_unqueued));

	put(t, "# HELP tokswitch_standin_total Stand-in candidates (issuer unavailable, stand-in "
	       "enabled), by result: approved, or declined 91 by the rule that refused it.\n"
	       "# TYPE tokswitch_standin_total counter\n");
	for (unsigned r = 0; r < TSW_STANDIN_RESULT_MAX; r++)
		put(t, "tokswitch_standin_total{result=\"%s\"} %" PRIu64 "\n",
		    tsw_metrics_standin_name(r), SUM(standin[r]));
	put(t,
	    "# HELP tokswitch_cryptogram_checks_total Requests whose cryptogram (DE55 ARQC or DE48 "
	    "token cryptogram) was checked, by result.\n"
	    "# TYPE tokswitch_cryptogram_checks_total counter\n");
	for (unsigned r = 0; r < TSW_CARD_CHECK_RESULT_MAX; r++)
		put(t, "tokswitch_cryptogram_checks_total{result=\"%s\"} %" PRIu64 "\n",
		    tsw_metrics_card_check_name(r), SUM(card_checks[r]));
	put(t,
	    "# HELP tokswitch_pin_translations_total DE52 PIN blocks translated for the issuer, or "
	    "declined 96 PIN_BLOCK, by result.\n"
	    "# TYPE tokswitch_pin_translations_total counter\n");
	for (unsigned r = 0; r < TSW_PIN_RESULT_MAX; r++)
		put(t, "tokswitch_pin_translations_total{result=\"%s\"} %" PRIu64 "\n",
		    tsw_metrics_pin_name(r), SUM(pin_translations[r]));
}

/* The latency histograms and the scalars table, summed over the shards. */
static void put_scalars(struct text *t, const struct tsw_ctl_source *src)
{
	struct tsw_hist h;

	sum_hist(src, offsetof(struct tsw_metrics_shard, issuer_rtt), &h);
	put_hist(t, "tokswitch_issuer_rtt_seconds", "Issuer round trip.", &h);
	sum_hist(src, offsetof(struct tsw_metrics_shard, internal), &h);
	put_hist(t, "tokswitch_internal_latency_seconds",
		 "Time inside the switch per delivered answer, issuer round trip excluded: "
		 "request forward plus answer delivery.",
		 &h);
	sum_hist(src, offsetof(struct tsw_metrics_shard, request_forward), &h);
	put_hist(t, "tokswitch_request_forward_seconds",
		 "From a request's frame taken in to its issuer copy in the link's output.", &h);
	sum_hist(src, offsetof(struct tsw_metrics_shard, answer_delivery), &h);
	put_hist(t, "tokswitch_answer_delivery_seconds",
		 "From an issuer answer taken in to its rewrite in the acquirer's output.", &h);

	for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
		const struct scalar *s = &scalars[i];
		uint64_t v = 0;

		for (uint32_t w = 0; w < src->n_shards; w++)
			v += rd((const uint64_t *)(const void *)((const char *)src->shards[w] +
								 s->off));
		put(t, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", s->name, s->help, s->name,
		    s->type, s->name, v);
	}
}

/* Per issuer link: the workers signed on, and its reconnects. */
static void put_links(struct text *t, const struct tsw_ctl_source *src)
{
	put(t, "# HELP tokswitch_issuer_links_signed_on Workers whose link to the issuer host is "
	       "signed "
	       "on.\n# TYPE tokswitch_issuer_links_signed_on gauge\n");
	for (uint32_t l = 0; l < src->n_links && l < TSW_METRICS_LINKS_MAX; l++) {
		uint32_t up = 0;

		for (uint32_t w = 0; w < src->n_shards; w++)
			up += rd(&src->shards[w]->link_up[l]) == 3;
		put(t, "tokswitch_issuer_links_signed_on{");
		put_link_labels(t, src, l);
		put(t, "} %u\n", up);
	}
	put(t, "# HELP tokswitch_issuer_link_reconnects_total Issuer link connect attempts after a "
	       "failure.\n# TYPE tokswitch_issuer_link_reconnects_total counter\n");
	for (uint32_t l = 0; l < src->n_links && l < TSW_METRICS_LINKS_MAX; l++) {
		put(t, "tokswitch_issuer_link_reconnects_total{");
		put_link_labels(t, src, l);
		put(t, "} %" PRIu64 "\n", SUM(link_reconnects[l]));
	}
}

/* The build's facts as one series of value 1 (Prometheus' _info idiom:
 * a dashboard joins on its labels). */
static void put_build_info(struct text *t, const struct tsw_ctl_source *src)
{
	put(t, "# HELP tokswitch_build_info The version of this build and the I/O backend its "
	       "workers run (uring, uv); always 1.\n"
	       "# TYPE tokswitch_build_info gauge\ntokswitch_build_info{version=\"");
	put_label_value(t, src->version ? src->version : "unknown");
	put(t, "\",io_backend=\"");
	put_label_value(t, src->io_backend ? src->io_backend : "unknown");
	put(t, "\"} 1\n");
}

int tsw_ctl_render_metrics(const struct tsw_ctl_source *src, char **ret_text, size_t *ret_len)
{
	struct text t = {.cap = TEXT_INITIAL_BYTES};

	t.p = malloc(t.cap);
	if (!t.p)
		return -ENOMEM;
	t.p[0] = '\0';

	put_requests(&t, src);
	put_scalars(&t, src);
	put_links(&t, src);
	put(&t,
	    "# HELP tokswitch_workers Worker threads.\n# TYPE tokswitch_workers "
	    "gauge\ntokswitch_workers %u\n",
	    src->n_shards);
	put(&t,
	    "# HELP tokswitch_ready 1 when every worker is ready (issuer links signed on).\n"
	    "# TYPE tokswitch_ready gauge\ntokswitch_ready %d\n",
	    src->ready ? src->ready(src->ctx) : 0);
	put_build_info(&t, src);
	put_state(&t, src->state);
	put_hsm(&t, src->hsm);
	put_cluster(&t, src);

	if (t.failed) {
		free(t.p);
		return -ENOMEM;
	}
	*ret_text = t.p;
	*ret_len = t.len;
	return 0;
}
