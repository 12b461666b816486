#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"
#include "harness.h"
#include "testvault.h"
#include "tsw/error.h"
#include "tsw/hsm.h"
#include "tsw/state.h"
#include "tsw/vault.h"

struct h_token_info h_tokens[H_TOKEN_MAX];

static void reject(void *ctx, unsigned long line, int err, const char *reason)
{
	(void)ctx;
	cr_log_error("vault rejected row %lu: %s (%s)", line, reason, tsw_strerror(err));
}

/* Row i of the test vault: the fields of token i (enum h_token), whose
 * numbers the harness keeps in h_tokens. */
static void fill_token(void *arg, unsigned i, struct tsw_vault_row *row)
{
	struct tsw_token *t = &row->token;

	(void)arg;
	if (i == H_ROUTE2)
		testvault_number(row->pan, "6011", i + 1);
	memcpy(h_tokens[i].token, t->token, 17);
	memcpy(h_tokens[i].pan, row->pan, 17);
	t->status = TSW_TOKEN_ACTIVE;
	strcpy(t->token_expiry, i == H_EXPIRED ? "2001" : "3012");
	strcpy(t->pan_expiry, "2911");
	strcpy(t->trid, "12345678901");
	t->assurance_level = 7;
	snprintf(t->token_ref, sizeof(t->token_ref), "TREF%u", i);
	strcpy(t->par, "PAR0000000000000000000000001");
	switch (i) {
	case H_SUSPENDED:
		t->status = TSW_TOKEN_SUSPENDED;
		break;
	case H_DELETED:
		t->status = TSW_TOKEN_DELETED;
		break;
	case H_MERCHANT:
		t->n_merchants = 1;
		strcpy(t->merchants[0].merchant_id, "MERCHANT0000001");
		break;
	case H_POS:
		t->pos_modes = 1u << TSW_POS_CHIP;
		break;
	case H_DEVICE:
		t->device_required = 1;
		strcpy(row->device_ref, "DEV-1");
		break;
	case H_AMOUNT:
		t->amount_limit = 1000;
		strcpy(t->currency, "840");
		break;
	case H_LIMITED:
		t->max_uses = 1;
		break;
	case H_T4T:
		strcpy(t->original_token, h_tokens[H_OK].token);
		break;
	case H_CHIP:
		t->cvn = 18;
		t->psn = 1;
		break;
	case H_CHIP10:
		t->cvn = 10;
		break;
	case H_CHIP_LIMITED:
		t->cvn = 20;
		t->psn = 2;
		t->max_uses = 1;
		break;
	default:
		break;
	}
}

static void make_vault(struct h *h)
{
	struct tsw_vault_import_stats st;
	int r =
	    testvault_create(h->dir, H_TOKEN_MAX, NULL, fill_token, NULL, reject, &h->vault, &st);

	cr_assert_eq(r, 0, "test vault: %s", tsw_strerror(r));
	cr_assert_eq(st.imported, H_TOKEN_MAX, "imported %lu", st.imported);
}

/* The engine's latency clock: the test's, clock_lag_ns after the now_ns
 * of the call (the time the engine spends on a message). */
static uint64_t h_clock_ns(void *arg)
{
	const struct h *h = arg;

	return h->now + h->clock_lag_ns;
}

/* The state's clock follows the test's: leases and backoff in ms. */
static uint64_t h_clock_ms(void *arg)
{
	const struct h *h = arg;

	return h->now / 1000000ull;
}

static void state_open(struct h *h)
{
	char sdir[128];

	snprintf(sdir, sizeof(sdir), "%s/state", h->dir);
	cr_assert_eq(tsw_state_open(sdir, &h->scfg, &h->state), 0);
	if (h->state_efd <= 0) {
		h->state_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		cr_assert_geq(h->state_efd, 0);
	}
	cr_assert_eq(tsw_state_add_waker(h->state, h->state_efd), 0);
}

void h_state_reopen(struct h *h)
{
	tsw_state_close(h->state);
	h->state = NULL;
	state_open(h);
}

void h_restart(struct h *h)
{
	tsw_engine_free(h->e);
	h->e = NULL;
	h_state_reopen(h);
	memset(&h->m, 0, sizeof(h->m));
	h_start(h);
}

void h_init(struct h *h)
{
	char sdir[128];

	memset(h, 0, sizeof(*h));
	strcpy(h->dir, "/tmp/tsw-engine-XXXXXX");
	cr_assert(mkdtemp(h->dir));
	cr_assert_eq(tsw_iso_profile_load_named(NULL, "default", &h->prof), 0);
	make_vault(h);
	snprintf(sdir, sizeof(sdir), "%s/state", h->dir);
	cr_assert_eq(mkdir(sdir, 0700), 0);
	h->scfg.clock_ms = h_clock_ms;
	h->scfg.clock_arg = h;
	state_open(h);
	tsw_engine_config_init(&h->cfg);
	h->cfg.acq_profile = &h->prof;
	h->cfg.iss_profile = &h->prof;
	h->cfg.clock_ns = h_clock_ns;
	h->cfg.clock_arg = h;
	h->clock_lag_ns = 0;
	h->cfg.settings.max_conns = 4;
	h->cfg.settings.max_inflight_per_conn = 16;
	h->cfg.settings.max_pending = 64;
	h->cfg.settings.out_buf_bytes = 32768;
	h->cfg.settings.link_buf_bytes = 256 * 1024;
	h->cfg.settings.issuer_timeout_ms = 2000;
	h->cfg.settings.echo_interval_ms = 30000;
	h->cfg.settings.reconnect_min_ms = 100;
	h->cfg.settings.reconnect_max_ms = 1000;
	h->cfg.settings.n_issuers = 1;
	h->cfg.settings.n_hosts = 1;
	strcpy(h->cfg.settings.hosts[0].addr.host, "127.0.0.1");
	h->cfg.settings.hosts[0].addr.port = 1;
	h->now = 1000000000ull;
}

void h_sign_on(struct h *h, uint32_t link, const char *rc)
{
	struct h_msgs *out = malloc(sizeof(*out));

	cr_assert(tsw_engine_link_wants_connect(h->e, link, h->now));
	tsw_engine_link_connecting(h->e, link, h->now);
	tsw_engine_link_up(h->e, link, h->now);
	h_collect(h, TSW_EP_LINK, link, out);
	cr_assert_eq(out->n, 1);
	cr_assert_eq(memcmp(out->m[0].mti, "0800", 4), 0);
	cr_assert_str_eq(h_field(&out->m[0], 70), "001");
	cr_assert_eq(h_issuer_answer(h, link, &out->m[0], rc, 0), 0);
	free(out);
}

void h_start(struct h *h)
{
	uint32_t i;

	cr_assert_eq(tsw_engine_new(&h->cfg, h->vault, h->state, &h->m, &h->e), 0);
	h->slot = tsw_engine_acq_open(h->e, h->now);
	cr_assert_geq(h->slot, 0);
	for (i = 0; i < h->cfg.settings.n_hosts; i++)
		h_sign_on(h, i, "00");
	cr_assert(tsw_engine_ready(h->e));
}

void h_card_keys(struct h *h)
{
	struct tsw_card_keys *k;
	int r;

	if (!h->hsm)
		cr_assert_eq(tsw_hsm_soft_open(NULL, &h->hsm), 0);
	r = tsw_card_keys_load(h->vault, h->hsm, &k);
	cr_assert_eq(r, 0, "card keys: %s", tsw_strerror(r));
	tsw_card_keys_put(h->keys);
	h->keys = k;
	h->cfg.hsm = h->hsm;
	h->cfg.card_keys = k;
}

void h_fini(struct h *h)
{
	char cmd[128];

	h_state_unstall(h);
	tsw_engine_free(h->e);
	tsw_card_keys_put(h->keys);
	tsw_hsm_close(h->hsm);
	tsw_state_close(h->state);
	if (h->state_efd > 0)
		close(h->state_efd);
	tsw_vault_close(h->vault);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
	(void)!system(cmd);
}

static size_t encode_edits(struct h *h, uint8_t *out, size_t cap, const struct tsw_iso_edit *ed,
			   size_t n)
{
	int r = tsw_iso_encode(&h->prof, NULL, ed, n, out, cap);

	cr_assert_geq(r, 0, "encode: %s", tsw_strerror(r));
	return (size_t)r;
}

size_t h_build(struct h *h, uint8_t *out, size_t cap, const char *mti, ...)
{
	struct tsw_iso_edit ed[64];
	size_t n = 0;
	va_list ap;
	int f;

	ed[n++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)mti};
	va_start(ap, mti);
	while ((f = va_arg(ap, int)) != 0) {
		const char *v = va_arg(ap, const char *);

		ed[n++] =
		    (struct tsw_iso_edit){(uint16_t)f, (uint16_t)strlen(v), (const uint8_t *)v};
	}
	va_end(ap);
	return encode_edits(h, out, cap, ed, n);
}

static void set_edit(struct tsw_iso_edit *ed, size_t *n, int f, const char *v)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (ed[i].field == f)
			break;
	if (i == *n)
		(*n)++;
	ed[i] =
	    (struct tsw_iso_edit){(uint16_t)f, (uint16_t)(v ? strlen(v) : 0), (const uint8_t *)v};
}

/* The standard 0100's fields for token t into ed[0..*n). */
static void auth_defaults(struct tsw_iso_edit *ed, size_t *n, enum h_token t, const char *stan)
{
	static char de35[64];
	const char *tok = h_tokens[t].token;

	snprintf(de35, sizeof(de35), "%s=30121010000012300000", tok);
	set_edit(ed, n, 0, "0100");
	set_edit(ed, n, 2, tok);
	set_edit(ed, n, 3, "000000");
	set_edit(ed, n, 4, "000000000500");
	set_edit(ed, n, 7, "1123031500");
	set_edit(ed, n, 11, stan);
	set_edit(ed, n, 12, "031500");
	set_edit(ed, n, 13, "1123");
	set_edit(ed, n, 14, "3012");
	set_edit(ed, n, 22, "051");
	set_edit(ed, n, 35, de35);
	set_edit(ed, n, 37, "123456789012");
	set_edit(ed, n, 41, "TERM0001");
	set_edit(ed, n, 42, "MERCHANT0000001");
	set_edit(ed, n, 49, "840");
}

static size_t encode_present(struct h *h, uint8_t *out, size_t cap, const struct tsw_iso_edit *ed,
			     size_t n)
{
	struct tsw_iso_edit fin[64];
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (ed[i].data)
			fin[k++] = ed[i];
	return encode_edits(h, out, cap, fin, k);
}

size_t h_auth(struct h *h, uint8_t *out, size_t cap, enum h_token t, const char *stan, ...)
{
	struct tsw_iso_edit ed[64];
	size_t n = 0;
	va_list ap;
	int f;

	auth_defaults(ed, &n, t, stan);
	va_start(ap, stan);
	while ((f = va_arg(ap, int)) != 0)
		set_edit(ed, &n, f, va_arg(ap, const char *));
	va_end(ap);
	return encode_present(h, out, cap, ed, n);
}

size_t h_auth_edits(struct h *h, uint8_t *out, size_t cap, enum h_token t, const char *stan,
		    const struct tsw_iso_edit *extra, size_t n_extra)
{
	struct tsw_iso_edit ed[64];
	size_t n = 0;

	auth_defaults(ed, &n, t, stan);
	for (size_t j = 0; j < n_extra; j++) {
		size_t i;

		for (i = 0; i < n && ed[i].field != extra[j].field; i++)
			;
		if (i == n)
			n++;
		ed[i] = extra[j];
	}
	return encode_present(h, out, cap, ed, n);
}

int h_send_raw(struct h *h, const uint8_t *bytes, size_t len)
{
	int r;

	tsw_engine_loop_begin(h->e, h->now);
	r = tsw_engine_acq_input(h->e, (uint32_t)h->slot, bytes, len, h->now);
	tsw_engine_loop_end(h->e);
	return r;
}

int h_send(struct h *h, const uint8_t *body, size_t len)
{
	uint8_t frame[H_BUF];

	frame[0] = (uint8_t)(len >> 8);
	frame[1] = (uint8_t)len;
	memcpy(frame + 2, body, len);
	return h_send_raw(h, frame, len + 2);
}

void h_collect(struct h *h, uint8_t kind, uint32_t slot, struct h_msgs *out)
{
	struct tsw_endpoint ep = {.kind = kind, .slot = slot};
	const uint8_t *data;
	size_t len, off = 0;

	tsw_engine_out(h->e, ep, &data, &len);
	cr_assert_leq(len, sizeof(out->buf));
	memcpy(out->buf, data, len);
	out->len = len;
	tsw_engine_sent(h->e, ep, len);
	out->n = 0;
	while (off + 2 <= len) {
		size_t fl = (size_t)out->buf[off] << 8 | out->buf[off + 1];
		int r;

		cr_assert_leq(off + 2 + fl, len, "truncated frame in output");
		cr_assert_lt(out->n, H_MAX_MSGS);
		r = tsw_iso_decode(&h->prof, out->buf + off + 2, fl, &out->m[out->n]);
		cr_assert_eq(r, 0, "engine output does not decode: %s field %d", tsw_strerror(r),
			     out->m[out->n].err_field);
		out->n++;
		off += 2 + fl;
	}
	cr_assert_eq(off, len);
}

void h_collect_acq_clean(struct h *h, struct h_msgs *out)
{
	unsigned i;

	h_collect(h, TSW_EP_ACQ, (uint32_t)h->slot, out);
	for (i = 0; i < H_TOKEN_MAX; i++)
		cr_assert_not(h_contains_pan(out->buf, out->len, h_tokens[i].pan),
			      "PAN digits in an acquirer answer");
}

unsigned h_keep_mti(struct h_msgs *m, const char *mti)
{
	unsigned i, k = 0;

	for (i = 0; i < m->n; i++)
		if (memcmp(m->m[i].mti, mti, 4) == 0)
			m->m[k++] = m->m[i];
	m->n = k;
	return k;
}

int h_issuer_answer(struct h *h, uint32_t link, const struct tsw_iso_msg *req, const char *rc, ...)
{
	static const unsigned copy[] = {2, 3, 4, 7, 11, 14, 37, 41, 42, 48, 49, 70, 90};
	struct tsw_iso_edit ed[64];
	uint8_t frame[H_BUF];
	char mti[5];
	size_t n = 0, i, k = 0;
	va_list ap;
	int f, r, len;

	memcpy(mti, req->mti, 4);
	mti[4] = 0;
	mti[2] = (char)(mti[2] + 1);
	for (i = 0; i < sizeof(copy) / sizeof(copy[0]); i++)
		if (tsw_iso_has(req, copy[i]))
			ed[n++] = (struct tsw_iso_edit){(uint16_t)copy[i], req->f[copy[i]].len,
							tsw_iso_ptr(req, copy[i])};
	ed[n++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)mti};
	ed[n++] = (struct tsw_iso_edit){39, 2, (const uint8_t *)rc};
	if (mti[1] != '8')
		ed[n++] = (struct tsw_iso_edit){38, 6, (const uint8_t *)"AB1234"};
	va_start(ap, rc);
	while ((f = va_arg(ap, int)) != 0)
		set_edit(ed, &n, f, va_arg(ap, const char *));
	va_end(ap);
	for (i = 0; i < n; i++)
		if (ed[i].data || ed[i].field == 0)
			ed[k++] = ed[i];
	len = tsw_iso_encode(&h->prof, NULL, ed, k, frame + 2, sizeof(frame) - 2);
	cr_assert_geq(len, 0, "issuer answer encode: %s", tsw_strerror(len));
	frame[0] = (uint8_t)(len >> 8);
	frame[1] = (uint8_t)len;
	tsw_engine_loop_begin(h->e, h->now);
	r = tsw_engine_link_input(h->e, link, frame, (size_t)len + 2, h->now);
	tsw_engine_loop_end(h->e);
	return r;
}

const char *h_field(const struct tsw_iso_msg *m, unsigned f)
{
	static char bufs[8][1024];
	static unsigned next;
	char *b = bufs[next++ % 8];

	if (!tsw_iso_has(m, f))
		return "(absent)";
	memcpy(b, tsw_iso_ptr(m, f), m->f[f].len);
	b[m->f[f].len] = 0;
	return b;
}

bool h_contains(const uint8_t *hay, size_t n, const char *needle)
{
	return memmem(hay, n, needle, strlen(needle)) != NULL;
}

bool h_contains_pan(const uint8_t *hay, size_t n, const char *digits)
{
	static const char hex[] = "0123456789ABCDEF";
	char *text;
	bool found;

	if (h_contains(hay, n, digits))
		return true;
	/* as hex text, packed BCD digits read as themselves, at any nibble */
	text = malloc(2 * n + 1);
	cr_assert_not_null(text);
	for (size_t i = 0; i < n; i++) {
		text[2 * i] = hex[hay[i] >> 4];
		text[2 * i + 1] = hex[hay[i] & 0x0f];
	}
	text[2 * n] = '\0';
	found = strstr(text, digits) != NULL;
	free(text);
	return found;
}

void h_advance(struct h *h, uint64_t ms)
{
	h->now += ms * 1000000ull;
	tsw_engine_loop_begin(h->e, h->now);
	tsw_engine_tick(h->e, h->now);
	tsw_engine_loop_end(h->e);
}

int64_t h_real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_collect_after_commit(struct h *h, struct h_msgs *out)
{
	int64_t deadline = h_real_ms() + 10000;
	uint64_t id = h->e->saf_last_id;

	h_collect(h, TSW_EP_ACQ, (uint32_t)h->slot, out);
	if (out->n) {
		cr_assert(id && tsw_state_saf_durable(h->state, id),
			  "answered before its reversal was durable");
		return;
	}
	cr_assert_neq(id, 0, "no reversal was put");
	while (!tsw_state_saf_durable(h->state, id)) {
		struct pollfd p = {.fd = h->state_efd, .events = POLLIN};
		int64_t left = deadline - h_real_ms();
		uint64_t v;

		cr_assert_gt(left, 0, "reversal not durable within 10 s");
		if (poll(&p, 1, (int)left) == 1)
			cr_assert_eq(read(h->state_efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	}
	h_advance(h, 0);
	h_collect(h, TSW_EP_ACQ, (uint32_t)h->slot, out);
}

void h_wait_step(struct h *h, int64_t deadline_ms, const char *what)
{
	struct pollfd p = {.fd = h->state_efd, .events = POLLIN};
	uint64_t v;

	cr_assert_gt(deadline_ms - h_real_ms(), 0, "%s: not within the deadline", what);
	if (poll(&p, 1, 10) == 1)
		cr_assert_eq(read(h->state_efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	h_advance(h, 0);
}

void h_state_stall(struct h *h)
{
	int in[2], out[2];
	char sdir[128], line[16] = "";
	struct pollfd p;
	FILE *f;
	pid_t pid;

	cr_assert_eq(h->stall_pid, 0, "the state is stalled already");
	snprintf(sdir, sizeof(sdir), "%s/state", h->dir);
	cr_assert_eq(pipe(in), 0);
	cr_assert_eq(pipe(out), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl(TSW_STATE_STALL, TSW_STATE_STALL, sdir, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	h->stall_pid = pid;
	h->stall_in = in[1];
	p = (struct pollfd){.fd = out[0], .events = POLLIN};
	cr_assert_eq(poll(&p, 1, 10000), 1, "state-stall did not take the lock within 10 s");
	f = fdopen(out[0], "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(line, sizeof(line), f), "state-stall exited");
	fclose(f);
	cr_assert_str_eq(line, "stalled\n");
}

void h_state_unstall(struct h *h)
{
	int status;

	if (!h->stall_pid)
		return;
	close(h->stall_in);
	cr_assert_eq(waitpid(h->stall_pid, &status, 0), h->stall_pid);
	h->stall_pid = 0;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "state-stall failed");
}

void h_wait_durable(struct h *h, uint64_t ticket)
{
	int64_t deadline = h_real_ms() + 10000;

	while (!tsw_state_durable(h->state, ticket))
		h_wait_step(h, deadline, "the ticket's commit");
	h_advance(h, 0);
}

uint64_t h_record_ticket(const struct h *h)
{
	for (uint32_t i = 0; i < h->e->n_reqs; i++) {
		const struct req *r = &h->e->reqs[i];

		if (r->in_use && r->appr_slot && !tsw_state_durable(h->state, r->rec_ticket))
			return r->rec_ticket;
	}
	return 0;
}

void h_wait_records(struct h *h)
{
	uint64_t ticket;

	while ((ticket = h_record_ticket(h)))
		h_wait_durable(h, ticket);
}
