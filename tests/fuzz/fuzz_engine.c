/* The engine as the engine fuzz targets drive it: fuzz_engine.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_engine.h"
#include "fuzz_util.h"
#include "testvault.h"
#include "tsw/error.h"
#include "tsw/vault.h"

#define FE_PUMP_ROUNDS 16 /* output/answer rounds per pump (bounded time) */
#define FE_PAUSE_STEPS 4  /* clock steps given to a paused connection */
#define FE_EVENT_TEXT 512 /* bytes of a formatted event */

char fe_tokens[FE_TOKEN_MAX][20];
char fe_pans[FE_TOKEN_MAX][20];

static struct tsw_vault *vault;
static struct tsw_iso_profile profiles[FE_PROF_MAX];

/* Row i of the fuzzed engine's vault (enum fe_token); the harness keeps
 * its numbers in fe_tokens and fe_pans. */
static void fill_token(void *arg, unsigned i, struct tsw_vault_row *row)
{
	struct tsw_token *t = &row->token;

	(void)arg;
	memcpy(fe_tokens[i], t->token, 17);
	memcpy(fe_pans[i], row->pan, 17);
	t->status = i == FE_SUSPENDED ? TSW_TOKEN_SUSPENDED : TSW_TOKEN_ACTIVE;
	strcpy(t->token_expiry, "3012");
	strcpy(t->pan_expiry, "2911");
	strcpy(t->trid, "12345678901");
	t->assurance_level = 7;
	snprintf(t->token_ref, sizeof(t->token_ref), "TREF%u", i);
	if (i == FE_AMOUNT) {
		t->amount_limit = 1000;
		strcpy(t->currency, "840");
	}
	if (i == FE_T4T)
		strcpy(t->original_token, fe_tokens[FE_OK]);
	if (i == FE_LIMITED)
		t->max_uses = 1;
}

static void make_vault(void)
{
	struct tsw_vault_import_stats st;
	int r =
	    testvault_create(fuzz_dir(), FE_TOKEN_MAX, NULL, fill_token, NULL, NULL, &vault, &st);

	if (r < 0 || st.imported != FE_TOKEN_MAX)
		abort();
	if (tsw_iso_profile_load_named(NULL, "default", &profiles[FE_PROF_DEFAULT]) < 0 ||
	    tsw_iso_profile_load_named(NULL, "ascii4", &profiles[FE_PROF_ASCII4]) < 0)
		abort();
	profiles[FE_PROF_SMALL] = profiles[FE_PROF_DEFAULT];
	profiles[FE_PROF_SMALL].max_frame = 1024;
	profiles[FE_PROF_ASCII4_LARGE] = profiles[FE_PROF_ASCII4];
	profiles[FE_PROF_ASCII4_LARGE].max_frame = 9999;
}

const struct tsw_iso_profile *fe_profile(enum fe_profile which)
{
	if (!vault)
		make_vault();
	return &profiles[which];
}

/* A PAN of the vault in bytes the acquirer did not send itself. Looked
 * for in each field's value: the guard's contract (digits that only
 * line up across two fields, put there by the issuer, are no field's
 * PAN). */
static bool leaks_pan(const struct fe *f, const uint8_t *p, size_t n)
{
	for (unsigned i = 0; i < FE_TOKEN_MAX; i++)
		if (fuzz_has(p, n, fe_pans[i], 16) &&
		    !fuzz_has(f->acq_in, f->acq_in_len, fe_pans[i], 16))
			return true;
	return false;
}

static void check_events(struct fe *f)
{
	struct tsw_engine_event ev;
	char text[FE_EVENT_TEXT];

	while (tsw_engine_next_event(f->e, &ev)) {
		size_t n = tsw_engine_event_format(&ev, text, sizeof(text));

		fuzz_check(ev.kind < TSW_EV_KIND_MAX && n < sizeof(text));
		fuzz_check(memchr(ev.token, '\0', sizeof(ev.token)) != NULL);
		/* tokens are masked, PANs never there */
		for (unsigned i = 0; i < FE_TOKEN_MAX; i++) {
			fuzz_check(!fuzz_has(text, n, fe_pans[i], 16));
			fuzz_check(!fuzz_has(text, n, fe_tokens[i], 16));
			fuzz_check(!fuzz_has(ev.token, strlen(ev.token), fe_tokens[i], 16));
		}
	}
}

/* Splits out[0..len) into frames of p; each must be whole and decode.
 * Calls fn on each non-empty one. */
static void each_frame(struct fe *f, const struct tsw_iso_profile *p, const uint8_t *out,
		       size_t len, void (*fn)(struct fe *, const struct tsw_iso_msg *))
{
	struct tsw_iso_framer fr;
	size_t off = 0;
	const uint8_t *body;
	size_t blen;
	int r;

	fuzz_check(tsw_iso_framer_init(&fr, p) == 0);
	while ((r = tsw_iso_framer_next(&fr, out, len, &off, &body, &blen)) == 1) {
		struct tsw_iso_msg m;

		if (blen == 0)
			continue;
		fuzz_check(blen <= p->max_frame);
		fuzz_check(tsw_iso_decode(p, body, blen, &m) == 0);
		fn(f, &m);
	}
	/* the engine writes whole frames only */
	fuzz_check(r == 0 && off == len && fr.acc_len == 0 && !fr.have_hdr);
	tsw_iso_framer_free(&fr);
}

static void acq_answer(struct fe *f, const struct tsw_iso_msg *m)
{
	const char *pan = f->answer_pan ? f->answer_pan(m) : NULL;

	for (unsigned i = 2; i < TSW_ISO_FIELDS; i++) {
		if (!tsw_iso_has(m, i))
			continue;
		if (pan)
			fuzz_check(!fuzz_has(tsw_iso_ptr(m, i), m->f[i].len, pan, strlen(pan)));
		else
			fuzz_check(!leaks_pan(f, tsw_iso_ptr(m, i), m->f[i].len));
	}
	/* the acquirer gets answers only: MTI xx1x, xx3x */
	fuzz_check((m->mti[2] - '0') % 2 == 1);
	/* every answer carries a 2-byte response code */
	fuzz_check(tsw_iso_has(m, 39) && m->f[39].len == 2);
	f->answers++;
	if (f->on_answer)
		f->on_answer(m);
}

static void answer_request(struct fe *f, const struct tsw_iso_msg *req)
{
	static const unsigned copy[] = {2, 3, 4, 7, 11, 14, 37, 41, 42, 48, 49, 70, 90};
	struct tsw_iso_edit ed[32];
	uint8_t *frame = malloc(f->iss->max_frame + 4);
	char mti[4];
	size_t n = 0, hdr = tsw_iso_header_size(f->iss);
	int len;

	fuzz_check(frame != NULL);
	memcpy(mti, req->mti, 4);
	mti[2] = (char)(mti[2] + 1);
	ed[n++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)mti};
	for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++)
		if (tsw_iso_has(req, copy[i]))
			ed[n++] = (struct tsw_iso_edit){(uint16_t)copy[i], req->f[copy[i]].len,
							tsw_iso_ptr(req, copy[i])};
	ed[n++] = (struct tsw_iso_edit){39, 2, (const uint8_t *)"00"};
	if (mti[1] != '8')
		ed[n++] = (struct tsw_iso_edit){38, 6, (const uint8_t *)"AB1234"};
	len = tsw_iso_encode(f->iss, NULL, ed, n, frame + hdr, f->iss->max_frame);
	if (len > 0 && tsw_iso_header_write(f->iss, (size_t)len, frame) == 0) {
		tsw_engine_loop_begin(f->e, f->now);
		(void)tsw_engine_link_input(f->e, 0, frame, hdr + (size_t)len, f->now);
		tsw_engine_loop_end(f->e);
	}
	free(frame);
}

static bool answering;

static void link_request(struct fe *f, const struct tsw_iso_msg *m)
{
	if ((m->mti[2] - '0') % 2 == 1)
		return; /* never sent by the switch to an issuer, but harmless here */
	if (memcmp(m->mti, "0800", 4) != 0)
		f->iss_requests++;
	if (answering)
		answer_request(f, m);
}

size_t fe_take_link(struct fe *f, uint8_t **ret)
{
	struct tsw_endpoint ep = {.kind = TSW_EP_LINK, .slot = 0};
	const uint8_t *data;
	size_t len;
	uint8_t *copy;

	tsw_engine_out(f->e, ep, &data, &len);
	copy = malloc(len ? len : 1);
	fuzz_check(copy != NULL);
	memcpy(copy, data, len);
	tsw_engine_sent(f->e, ep, len);
	*ret = copy;
	return len;
}

static void take_acq(struct fe *f)
{
	struct tsw_endpoint ep = {.kind = TSW_EP_ACQ, .slot = (uint32_t)f->slot};
	const uint8_t *data;
	size_t len;

	tsw_engine_out(f->e, ep, &data, &len);
	each_frame(f, f->acq, data, len, acq_answer);
	tsw_engine_sent(f->e, ep, len);
}

void fe_pump(struct fe *f, bool answer)
{
	for (int round = 0; round < FE_PUMP_ROUNDS; round++) {
		struct tsw_endpoint ep;
		uint32_t slot;
		bool any = false;

		while (tsw_engine_next_dirty(f->e, &ep)) {
			any = true;
			if (ep.kind == TSW_EP_LINK) {
				uint8_t *out;
				size_t len = fe_take_link(f, &out);

				fuzz_check(ep.slot == 0);
				answering = answer;
				each_frame(f, f->iss, out, len, link_request);
				answering = false;
				free(out);
			} else {
				fuzz_check(ep.kind == TSW_EP_ACQ && (int)ep.slot == f->slot &&
					   !f->acq_closed);
				take_acq(f);
			}
		}
		while (tsw_engine_next_close(f->e, &slot)) {
			fuzz_check((int)slot == f->slot && !f->acq_closed);
			take_acq(f);
			tsw_engine_acq_close(f->e, slot);
			f->acq_closed = true;
			any = true;
		}
		check_events(f);
		if (!any)
			break;
	}
	fuzz_check(f->answers <= f->acq_frames_in);
}

void fe_advance(struct fe *f, uint64_t ms, bool answer)
{
	f->now += ms * 1000000ull;
	tsw_engine_loop_begin(f->e, f->now);
	tsw_engine_tick(f->e, f->now);
	tsw_engine_loop_end(f->e);
	fe_pump(f, answer);
}

static void sign_on(struct fe *f)
{
	fuzz_check(tsw_engine_link_wants_connect(f->e, 0, f->now));
	tsw_engine_link_connecting(f->e, 0, f->now);
	tsw_engine_link_up(f->e, 0, f->now);
	fe_pump(f, true);
	fuzz_check(tsw_engine_ready(f->e));
}

void fe_start(struct fe *f, enum fe_profile acq, enum fe_profile iss)
{
	memset(f, 0, sizeof(*f));
	f->acq = fe_profile(acq);
	f->iss = fe_profile(iss);
	tsw_engine_config_init(&f->cfg);
	f->cfg.acq_profile = f->acq;
	f->cfg.iss_profile = f->iss;
	f->cfg.settings.max_conns = 2;
	f->cfg.settings.max_inflight_per_conn = 8;
	f->cfg.settings.max_pending = 32;
	f->cfg.settings.out_buf_bytes = 32768;
	f->cfg.settings.in_buf_bytes = 32768;
	f->cfg.settings.link_buf_bytes = 65536;
	f->cfg.settings.issuer_timeout_ms = 2000;
	f->cfg.settings.idle_timeout_ms = 60000;
	f->cfg.settings.echo_interval_ms = 30000;
	f->cfg.settings.reconnect_min_ms = 100;
	f->cfg.settings.reconnect_max_ms = 1000;
	f->cfg.settings.n_issuers = 1;
	f->cfg.settings.n_hosts = 1;
	strcpy(f->cfg.settings.hosts[0].addr.host, "127.0.0.1");
	f->cfg.settings.hosts[0].addr.port = 1;
	f->cfg.settings.acq_reversal_memory = 64;
	f->cfg.settings.expired_stan_memory = 64;
	f->cfg.settings.max_parked = 8;
	f->cfg.settings.standin_max_tokens = 16;
	f->cfg.settings.log_event_queue = 64;
	f->now = 1000000000ull;
	fuzz_check(tsw_engine_new(&f->cfg, vault, NULL, &f->m, &f->e) == 0);
	f->slot = tsw_engine_acq_open(f->e, f->now);
	fuzz_check(f->slot >= 0);
	sign_on(f);
}

void fe_stop(struct fe *f)
{
	tsw_engine_shutdown(f->e, f->now);
	fe_pump(f, false);
	tsw_engine_free(f->e);
	f->e = NULL;
}

/* Counts the non-empty frames of what the acquirer sends, as the engine's
 * framer sees them. */
static void count_frames(struct fe *f, struct tsw_iso_framer *fr, const uint8_t *data, size_t len)
{
	size_t off = 0;
	const uint8_t *body;
	size_t blen;

	while (tsw_iso_framer_next(fr, data, len, &off, &body, &blen) == 1)
		f->acq_frames_in += blen > 0;
}

void fe_acq_feed(struct fe *f, const uint8_t *data, size_t len, size_t chunk, bool answer)
{
	struct tsw_iso_framer fr;

	fuzz_check(tsw_iso_framer_init(&fr, f->acq) == 0);
	f->acq_in = data;
	for (size_t at = 0; at < len && !f->acq_closed;) {
		size_t n = len - at < chunk ? len - at : chunk;
		int r;

		for (int i = 0;
		     i < FE_PAUSE_STEPS && tsw_engine_acq_paused(f->e, (uint32_t)f->slot); i++)
			fe_advance(f, 1, answer);
		f->acq_in_len = at + n;
		count_frames(f, &fr, data + at, n);
		tsw_engine_loop_begin(f->e, f->now);
		r = tsw_engine_acq_input(f->e, (uint32_t)f->slot, data + at, n, f->now);
		tsw_engine_loop_end(f->e);
		fuzz_check(r == 0 || r == -TSW_E_FRAME_TOO_BIG || r == -TSW_E_BAD_HEADER ||
			   r == -TSW_E_BAD_INPUT || r == -TSW_E_FULL);
		fe_pump(f, answer);
		if (r < 0 && !f->acq_closed) {
			take_acq(f);
			tsw_engine_acq_close(f->e, (uint32_t)f->slot);
			f->acq_closed = true;
		}
		at += n;
	}
	tsw_iso_framer_free(&fr);
}

void fe_link_feed(struct fe *f, const uint8_t *data, size_t len, size_t chunk)
{
	for (size_t at = 0; at < len;) {
		size_t n = len - at < chunk ? len - at : chunk;
		int r;

		tsw_engine_loop_begin(f->e, f->now);
		r = tsw_engine_link_input(f->e, 0, data + at, n, f->now);
		tsw_engine_loop_end(f->e);
		fuzz_check(r == 0 || r == -TSW_E_FRAME_TOO_BIG || r == -TSW_E_BAD_HEADER);
		fe_pump(f, false);
		if (r < 0) {
			tsw_engine_link_down(f->e, 0, f->now);
			fe_pump(f, false);
			return;
		}
		at += n;
	}
}

size_t fe_auth(struct fe *f, enum fe_token t, const char *stan, uint8_t *out, size_t cap)
{
	char de35[64];
	const char *tok = fe_tokens[t];
	size_t hdr = tsw_iso_header_size(f->acq);
	struct tsw_iso_edit ed[] = {
	    {0, 4, (const uint8_t *)"0100"},	    {2, 16, (const uint8_t *)tok},
	    {3, 6, (const uint8_t *)"000000"},	    {4, 12, (const uint8_t *)"000000000500"},
	    {7, 10, (const uint8_t *)"1123031500"}, {11, 6, (const uint8_t *)stan},
	    {12, 6, (const uint8_t *)"031500"},	    {13, 4, (const uint8_t *)"1123"},
	    {14, 4, (const uint8_t *)"3012"},	    {22, 3, (const uint8_t *)"051"},
	    {35, 0, (const uint8_t *)de35},	    {37, 12, (const uint8_t *)"123456789012"},
	    {41, 8, (const uint8_t *)"TERM0001"},   {42, 15, (const uint8_t *)"MERCHANT0000001"},
	    {49, 3, (const uint8_t *)"840"},
	};
	int len;

	ed[10].len = (uint16_t)snprintf(de35, sizeof(de35), "%s=30121010000012300000", tok);
	len = tsw_iso_encode(f->acq, NULL, ed, sizeof(ed) / sizeof(ed[0]), out + hdr, cap - hdr);
	fuzz_check(len > 0 && tsw_iso_header_write(f->acq, (size_t)len, out) == 0);
	return hdr + (size_t)len;
}
