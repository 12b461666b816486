/* tokswitch-top's screen: one function per section. */
#include "view.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "histogram.h"

#define NUM_BYTES 32
#define LABEL_BYTES 96
#define RC_ROWS_MAX 48
#define REASON_ROWS_MAX 64

static const struct top_limit limits[] = {
    {"limits.max_conns", "tokswitch_connections_refused_total", ""},
    {"limits.max_inflight_per_conn", "tokswitch_backpressure_pauses_total", ""},
    {"limits.max_pending", "tokswitch_pending_full_total", ""},
    {"limits.out_buf_bytes", "tokswitch_slow_consumer_closes_total", ""},
    {"limits.max_frame", "tokswitch_frames_refused_total", ""},
    {"limits.max_frame", "tokswitch_issuer_frames_too_big_total", ""},
    {"limits.idle_timeout_ms", "tokswitch_connections_idle_closed_total", ""},
    {"limits.in_buf_bytes", "tokswitch_stash_overflows_total", ""},
    {"limits.link_buf_bytes", "tokswitch_link_out_full_total", ""},
    {"limits.max_parked", "tokswitch_parked_full_total", ""},
    {"limits.acq_reversal_memory", "tokswitch_acq_reversals_evicted_total", ""},
    {"limits.expired_stan_memory", "tokswitch_expired_stans_evicted_total", ""},
    {"limits.max_pending", "tokswitch_duplicates_refused_total", ""},
    {"issuer.timeout_ms", "tokswitch_timeouts_total", ""},
    {"issuer.timeout_ms", "tokswitch_park_timeouts_total", ""},
    {"saf.durable_wait_ms", "tokswitch_answers_held_timeouts_total", ""},
    {"state.queue_size", "tokswitch_state_queue_full_total", ""},
    {"state.max_tokens", "tokswitch_state_table_full_total", ""},
    {"state.max_reservations", "tokswitch_state_tickets_full_total", ""},
    {"state.saf_max_entries", "tokswitch_state_saf_full_total", ""},
    {"state.saf_max_entries", "tokswitch_saf_dropped_total", ""},
    {"state.saf_lease_ms", "tokswitch_state_saf_lease_expired_total", ""},
    {"state.map_size_mb", "tokswitch_state_commit_errors_total", ""},
    {"state.map_size_mb", "tokswitch_state_saf_refused_total", ""},
    {"state.map_size_mb", "tokswitch_state_reserve_refused_total", ""},
    {"standin.max_amount", "tokswitch_standin_total", "result=\"declined_amount\""},
    {"standin.max_amount_per_token", "tokswitch_standin_total", "result=\"declined_exposure\""},
    {"standin.max_tokens", "tokswitch_standin_exposure_full_total", ""},
    {"cryptogram.atc_window", "tokswitch_cryptogram_checks_total", "result=\"atc_window\""},
    {"hsm.max_keys", "tokswitch_hsm_key_full_total", ""},
    {"metrics.max_conns", "tokswitch_http_evicted_total", ""},
    {"metrics.max_conns", "tokswitch_http_refused_total", ""},
    {"metrics.max_request_bytes", "tokswitch_http_too_large_total", ""},
    {"metrics.request_timeout_ms", "tokswitch_http_request_timeouts_total", ""},
    {"metrics.idle_timeout_ms", "tokswitch_http_idle_closed_total", ""},
    {"metrics.token_file", "tokswitch_http_unauthorized_total", ""},
    {"server.log_event_burst", "tokswitch_log_events_suppressed_total", ""},
    {"server.log_event_queue", "tokswitch_log_events_dropped_total", ""},
};

static const struct {
	const char *rc, *what;
} rc_names[] = {
    {"00", "approved"},		  {"05", "do not honour"},	{"14", "invalid card number"},
    {"30", "format error"},	  {"51", "insufficient funds"}, {"54", "expired card"},
    {"55", "incorrect PIN"},	  {"57", "not permitted"},	{"61", "amount limit"},
    {"62", "restricted card"},	  {"63", "security violation"}, {"65", "use limit"},
    {"91", "issuer unavailable"}, {"94", "duplicate"},		{"96", "system error"},
};

const struct top_limit *top_view_limits(size_t *ret_n)
{
	*ret_n = sizeof(limits) / sizeof(limits[0]);
	return limits;
}

static void add(struct top_screen *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct top_screen *s, const char *fmt, ...)
{
	va_list ap;

	if (s->n == TOP_SCREEN_LINES_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(s->line[s->n], TOP_SCREEN_LINE_BYTES, fmt, ap);
	va_end(ap);
	/* a label value may hold any byte: none may move the cursor */
	for (char *p = s->line[s->n]; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	s->n++;
}

static double value_of(const struct top_scrape *s, const char *name, const char *labels)
{
	const struct top_sample *smp = s ? top_scrape_find(s, name, labels) : NULL;

	return smp ? smp->value : NAN;
}

static bool has_family(const struct top_scrape *s, const char *name)
{
	for (size_t i = 0; s && i < s->n; i++) {
		if (!strcmp(s->samples[i].name, name))
			return true;
	}
	return false;
}

/* A counter in the scrape before. The switch exports a label set once
 * it counted one: a series that scrape lacks, when it had others of the
 * name, was 0 then. */
static double before_of(const struct top_view *v, const char *name, const char *labels)
{
	double before = value_of(v->before, name, labels);

	return isnan(before) && has_family(v->before, name) ? 0 : before;
}

/* The rise of a counter per second between the scrapes (after a reset,
 * a counter below its old value: what it holds now). */
static double rate_of(const struct top_view *v, const char *name, const char *labels)
{
	double now = value_of(v->now, name, labels), before = before_of(v, name, labels);
	double d;

	if (isnan(now) || isnan(before) || v->dt_s <= 0)
		return NAN;
	d = now >= before ? now - before : now;
	return d / v->dt_s;
}

static const char *num(char *buf, double v, int decimals)
{
	if (isnan(v))
		return "-";
	snprintf(buf, NUM_BYTES, "%.*f", decimals, v);
	return buf;
}

static const char *secs(char *buf, double s)
{
	if (isnan(s))
		return "-";
	if (s < 1e-3)
		snprintf(buf, NUM_BYTES, "%.1f us", s * 1e6);
	else if (s < 1)
		snprintf(buf, NUM_BYTES, "%.2f ms", s * 1e3);
	else
		snprintf(buf, NUM_BYTES, "%.3f s", s);
	return buf;
}

static void header(const struct top_view *v, struct top_screen *s)
{
	const struct top_sample *bi = NULL;
	char ver[LABEL_BYTES] = "-", io[LABEL_BYTES] = "-", a[NUM_BYTES], b[NUM_BYTES];
	double durable = value_of(v->now, "tokswitch_durable", "");

	for (size_t i = 0; i < v->now->n && !bi; i++) {
		if (!strcmp(v->now->samples[i].name, "tokswitch_build_info"))
			bi = &v->now->samples[i];
	}
	if (bi) {
		top_label_get(bi->labels, "version", ver, sizeof(ver));
		top_label_get(bi->labels, "io_backend", io, sizeof(io));
	}
	/* the scrape number first: it stays on a narrow terminal */
	add(s, "tokswitch-top  scrape %lu  every %.1f s  %s  (q quits)", v->scrape_no,
	    v->interval_s, v->addr);
	add(s, "switch %s  io %s  workers %s/%s ready  state %s", ver, io,
	    num(a, value_of(v->now, "tokswitch_workers_ready", ""), 0),
	    num(b, value_of(v->now, "tokswitch_workers", ""), 0),
	    isnan(durable) ? "-"
	    : durable > 0  ? "on disk"
			   : "none (--no-state)");
	if (v->error)
		add(s, "SCRAPE FAILED: %s (the figures below are older)", v->error);
	else if (!v->before)
		add(s, "first scrape: rates from the next one, latency since start");
	else
		add(s, "rates over the last %.2f s", v->dt_s);
}

static const char *rc_what(const char *rc)
{
	for (size_t i = 0; i < sizeof(rc_names) / sizeof(rc_names[0]); i++) {
		if (!strcmp(rc_names[i].rc, rc))
			return rc_names[i].what;
	}
	return "";
}

struct row {
	char key[LABEL_BYTES];
	double total, rate;
};

/* Adds value and rate to the row of key in rows (n of them), making it. */
static void tally(struct row *rows, size_t *n, size_t max, const char *key, double total,
		  double rate)
{
	size_t i;

	for (i = 0; i < *n && strcmp(rows[i].key, key); i++)
		;
	if (i == *n) {
		if (*n == max)
			return;
		snprintf(rows[i].key, sizeof(rows[i].key), "%s", key);
		rows[i].total = 0;
		rows[i].rate = 0;
		(*n)++;
	}
	rows[i].total += total;
	rows[i].rate += rate; /* NAN stays NAN: no rate without a scrape before */
}

static int by_key(const void *a, const void *b)
{
	return strcmp(((const struct row *)a)->key, ((const struct row *)b)->key);
}

static void authorizations(const struct top_view *v, struct top_screen *s)
{
	struct row rows[RC_ROWS_MAX];
	size_t n = 0;
	double all = 0, all_rate = 0;
	char mti[8], rc[8], a[NUM_BYTES], b[NUM_BYTES];

	add(s, "%s", "");
	add(s, "%-34s %12s %14s", "AUTHORIZATIONS (0100, 0200)  rc", "per s", "total");
	for (size_t i = 0; i < v->now->n; i++) {
		const struct top_sample *smp = &v->now->samples[i];

		if (strcmp(smp->name, "tokswitch_requests_total") ||
		    top_label_get(smp->labels, "mti", mti, sizeof(mti)) < 0 ||
		    top_label_get(smp->labels, "rc", rc, sizeof(rc)) < 0 ||
		    (strcmp(mti, "0100") && strcmp(mti, "0200")))
			continue;
		tally(rows, &n, RC_ROWS_MAX, rc, smp->value, rate_of(v, smp->name, smp->labels));
	}
	qsort(rows, n, sizeof(rows[0]), by_key);
	for (size_t i = 0; i < n; i++) {
		add(s, "  %-2s %-29s %12s %14s", rows[i].key, rc_what(rows[i].key),
		    num(a, rows[i].rate, 1), num(b, rows[i].total, 0));
		all += rows[i].total;
		all_rate += rows[i].rate;
	}
	add(s, "  %-32s %12s %14s", "all", num(a, n ? all_rate : NAN, 1), num(b, n ? all : NAN, 0));
}

static int by_rate(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	double kx = isnan(x->rate) ? x->total : x->rate, ky = isnan(y->rate) ? y->total : y->rate;

	if (kx != ky)
		return kx < ky ? 1 : -1;
	return strcmp(x->key, y->key);
}

static void declines(const struct top_view *v, struct top_screen *s)
{
	struct row rows[REASON_ROWS_MAX];
	size_t n = 0, shown = 0;
	char reason[LABEL_BYTES], a[NUM_BYTES], b[NUM_BYTES];

	add(s, "%s", "");
	add(s, "%-34s %12s %14s", "SWITCH DECLINES  reason (top 5)", "per s", "total");
	for (size_t i = 0; i < v->now->n; i++) {
		const struct top_sample *smp = &v->now->samples[i];

		if (strcmp(smp->name, "tokswitch_declines_total") || smp->value <= 0 ||
		    top_label_get(smp->labels, "reason", reason, sizeof(reason)) < 0)
			continue;
		tally(rows, &n, REASON_ROWS_MAX, reason, smp->value,
		      rate_of(v, smp->name, smp->labels));
	}
	qsort(rows, n, sizeof(rows[0]), by_rate);
	for (size_t i = 0; i < n && shown < TOP_DECLINES_SHOWN; i++, shown++)
		add(s, "  %-32s %12s %14s", rows[i].key, num(a, rows[i].rate, 1),
		    num(b, rows[i].total, 0));
	if (!n)
		add(s, "  none");
}

/* The buckets of the interval, or the cumulative ones (*since_start). */
static int interval_hist(const struct top_view *v, const char *family, struct top_hist *h,
			 int *since_start)
{
	struct top_hist now, before;

	if (top_hist_read(v->now, family, &now) < 0)
		return -1;
	*since_start = 1;
	*h = now;
	if (v->before && top_hist_read(v->before, family, &before) == 0 &&
	    top_hist_delta(&now, &before, h) == 0)
		*since_start = 0;
	return 0;
}

static void latency_row(const struct top_view *v, struct top_screen *s, const char *what,
			const char *family)
{
	struct top_hist h;
	int since_start = 1;
	char a[NUM_BYTES], b[NUM_BYTES], c[NUM_BYTES];

	if (interval_hist(v, family, &h, &since_start) < 0) {
		add(s, "  %-22s %10s %10s %14s", what, "-", "-", "-");
		return;
	}
	add(s, "  %-22s %10s %10s %14s  %s", what, secs(a, top_hist_quantile(&h, 0.5)),
	    secs(b, top_hist_quantile(&h, 0.99)), num(c, h.b[h.n - 1].count, 0),
	    since_start ? "since start" : "last interval");
}

static void latency(const struct top_view *v, struct top_screen *s)
{
	add(s, "%s", "");
	add(s, "%-24s %10s %10s %14s", "LATENCY", "p50", "p99", "observations");
	latency_row(v, s, "switch-added", "tokswitch_internal_latency_seconds");
	latency_row(v, s, "issuer round trip", "tokswitch_issuer_rtt_seconds");
}

static const char *link_state(double signed_on, double workers)
{
	if (isnan(signed_on) || isnan(workers))
		return "-";
	if (signed_on <= 0)
		return "DOWN";
	return signed_on >= workers ? "up" : "partial";
}

static void link_row(const struct top_view *v, struct top_screen *s, const struct top_sample *smp)
{
	char link[LABEL_BYTES] = "-", iss[LABEL_BYTES] = "-", host[LABEL_BYTES] = "-";
	char a[NUM_BYTES], b[NUM_BYTES], c[NUM_BYTES];
	double workers = value_of(v->now, "tokswitch_workers", "");
	const char *rec = "tokswitch_issuer_link_reconnects_total";

	top_label_get(smp->labels, "link", link, sizeof(link));
	top_label_get(smp->labels, "issuer", iss, sizeof(iss));
	top_label_get(smp->labels, "host", host, sizeof(host));
	add(s, "  %-5s %-6s %-30s %-8s %4s/%-4s %12s", link, iss, host,
	    link_state(smp->value, workers), num(a, smp->value, 0), num(b, workers, 0),
	    num(c, value_of(v->now, rec, smp->labels), 0));
}

static void issuer_links(const struct top_view *v, struct top_screen *s)
{
	char a[NUM_BYTES], b[NUM_BYTES], c[NUM_BYTES], d[NUM_BYTES], e[NUM_BYTES];
	size_t links = 0;

	add(s, "%s", "");
	add(s, "%s", "ISSUER LINKS");
	add(s, "  %-5s %-6s %-30s %-8s %9s %12s", "link", "issuer", "host", "state", "signed on",
	    "reconnects");
	for (size_t i = 0; i < v->now->n; i++) {
		if (!strcmp(v->now->samples[i].name, "tokswitch_issuer_links_signed_on")) {
			link_row(v, s, &v->now->samples[i]);
			links++;
		}
	}
	if (!links)
		add(s, "  -");
	add(s, "  in flight %s   timeouts %s per s, %s in all   late answers %s   rerouted %s",
	    num(a, value_of(v->now, "tokswitch_inflight", ""), 0),
	    num(b, rate_of(v, "tokswitch_timeouts_total", ""), 1),
	    num(c, value_of(v->now, "tokswitch_timeouts_total", ""), 0),
	    num(d, value_of(v->now, "tokswitch_late_answers_total", ""), 0),
	    num(e, value_of(v->now, "tokswitch_issuer_requests_rerouted_total", ""), 0));
}

static void saf(const struct top_view *v, struct top_screen *s)
{
	char a[NUM_BYTES], b[NUM_BYTES], c[NUM_BYTES], d[NUM_BYTES], e[NUM_BYTES], f[NUM_BYTES];
	const char *age = "tokswitch_state_saf_oldest_age_seconds";

	add(s, "%s", "");
	add(s,
	    "SAF  queued %s of %s   in engines %s   in flight %s   oldest reversal %s s   "
	    "oldest advice %s s",
	    num(a, value_of(v->now, "tokswitch_state_saf_depth", ""), 0),
	    num(b, value_of(v->now, "tokswitch_state_saf_capacity", ""), 0),
	    num(c, value_of(v->now, "tokswitch_saf_depth", ""), 0),
	    num(d, value_of(v->now, "tokswitch_saf_inflight", ""), 0),
	    num(e, value_of(v->now, age, "kind=\"reversal\""), 1),
	    num(f, value_of(v->now, age, "kind=\"advice\""), 1));
	add(s, "     sent %s per s   acked %s per s   retried %s per s   dropped %s in all",
	    num(a, rate_of(v, "tokswitch_saf_sent_total", ""), 1),
	    num(b, rate_of(v, "tokswitch_saf_acked_total", ""), 1),
	    num(c, rate_of(v, "tokswitch_saf_retried_total", ""), 1),
	    num(d, value_of(v->now, "tokswitch_saf_dropped_total", ""), 0));
}

/* The stand-in decisions other than approved, summed ("-": none seen). */
static double standin_declined(const struct top_scrape *now)
{
	double sum = NAN;
	char result[LABEL_BYTES];

	for (size_t i = 0; i < now->n; i++) {
		const struct top_sample *smp = &now->samples[i];

		if (strcmp(smp->name, "tokswitch_standin_total") ||
		    top_label_get(smp->labels, "result", result, sizeof(result)) < 0 ||
		    !strcmp(result, "approved"))
			continue;
		sum = (isnan(sum) ? 0 : sum) + smp->value;
	}
	return sum;
}

static void standin_and_state(const struct top_view *v, struct top_screen *s)
{
	char a[NUM_BYTES], b[NUM_BYTES], c[NUM_BYTES], d[NUM_BYTES];
	double open = value_of(v->now, "tokswitch_state_open", "");
	double degraded = value_of(v->now, "tokswitch_state_writer_degraded", "");
	const char *health;

	add(s, "STAND-IN  approved %s (%s per s)   declined %s   advices queued %s",
	    num(a, value_of(v->now, "tokswitch_standin_total", "result=\"approved\""), 0),
	    num(b, rate_of(v, "tokswitch_standin_total", "result=\"approved\""), 1),
	    num(c, standin_declined(v->now), 0),
	    num(d, value_of(v->now, "tokswitch_standin_advices_queued_total", ""), 0));
	if (!isnan(open) && open <= 0)
		health = "no state";
	else if (isnan(degraded))
		health = "-";
	else
		health = degraded > 0 ? "DEGRADED" : "ok";
	add(s, "STATE WRITER  %s   held %s   commit errors %s   queue %s of %s", health,
	    num(a, value_of(v->now, "tokswitch_state_writer_held", ""), 0),
	    num(b, value_of(v->now, "tokswitch_state_commit_errors_total", ""), 0),
	    num(c, value_of(v->now, "tokswitch_state_queue_length", ""), 0),
	    num(d, value_of(v->now, "tokswitch_state_queue_capacity", ""), 0));
}

static void limits_hit(const struct top_view *v, struct top_screen *s)
{
	size_t hit = 0;
	char series[LABEL_BYTES], a[NUM_BYTES], b[NUM_BYTES];

	add(s, "%s", "");
	add(s, "%-30s %-52s %10s %10s", "LIMITS HIT SINCE LAST SCRAPE", "counter", "rise", "per s");
	if (!v->before) {
		add(s, "  - (needs a second scrape)");
		return;
	}
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		const struct top_limit *l = &limits[i];
		double now = value_of(v->now, l->series, l->labels);
		double before = before_of(v, l->series, l->labels);

		if (isnan(now) || isnan(before) || now == before)
			continue;
		snprintf(series, sizeof(series), "%s%s%s%s", l->series, *l->labels ? "{" : "",
			 l->labels, *l->labels ? "}" : "");
		add(s, "  %-28s %-52s %10s %10s", l->key, series,
		    num(a, now > before ? now - before : now, 0),
		    num(b, rate_of(v, l->series, l->labels), 1));
		hit++;
	}
	if (!hit)
		add(s, "  none");
}

void top_view_render(const struct top_view *v, struct top_screen *ret)
{
	ret->n = 0;
	header(v, ret);
	authorizations(v, ret);
	declines(v, ret);
	latency(v, ret);
	issuer_links(v, ret);
	saf(v, ret);
	standin_and_state(v, ret);
	limits_hit(v, ret);
}
