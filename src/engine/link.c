/* Issuer links: connection state, sign-on (0800 DE70 001) and echo (0800
 * DE70 301) on the issuer side, reconnect backoff with jitter, routing by
 * PAN BIN to an issuer and from the issuer to one of its hosts' links.
 * Reversals owed to issuers are in saf.c.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "tsw/error.h"

#define DE70_SIGN_ON "001"
#define DE70_ECHO "301"

static uint64_t xorshift(struct tsw_engine *e)
{
	uint64_t x = e->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	e->rng = x;
	return x;
}

int engine_route(const struct tsw_engine *e, const char *pan, size_t pan_len)
{
	int best = -1;
	size_t best_len = 0;
	uint32_t i;

	for (i = 0; i < e->cfg.n_routes; i++) {
		const struct tsw_config_route *rt = &e->cfg.routes[i];
		size_t n = strnlen(rt->bin_prefix, sizeof(rt->bin_prefix));

		if (n > pan_len || memcmp(rt->bin_prefix, pan, n) != 0)
			continue;
		if (best < 0 || n > best_len) {
			best = rt->issuer;
			best_len = n;
		}
	}
	/* no routes configured: everything goes to the first issuer */
	if (best < 0 && e->cfg.n_routes == 0 && e->cfg.n_issuers > 0)
		best = 0;
	return best;
}

int pick_link(struct tsw_engine *e, uint32_t issuer)
{
	uint32_t n = e->n_links, i = e->pick_next, k, best_pending = UINT32_MAX;
	int best = -1;

	/* the scan starts after the last pick, so hosts with as many
	 * requests in flight take turns instead of the first one taking all */
	for (k = 0; k < n; k++, i = i + 1 < n ? i + 1 : 0) {
		const struct issuer_link *l = &e->links[i];

		if (l->issuer != issuer || l->state != LINK_SIGNED_ON || l->pending >= best_pending)
			continue;
		best = (int)i;
		best_pending = l->pending;
	}
	if (best >= 0)
		e->pick_next = (uint32_t)best + 1 < n ? (uint32_t)best + 1 : 0;
	return best;
}

/* True when some link of issuer is signed on. */
static bool issuer_up(const struct tsw_engine *e, uint32_t issuer)
{
	uint32_t i;

	for (i = 0; i < e->n_links; i++)
		if (e->links[i].issuer == issuer && e->links[i].state == LINK_SIGNED_ON)
			return true;
	return false;
}

void fmt_de7(int64_t wall_s, char out[10])
{
	struct tm tm;
	time_t t = (time_t)wall_s;

	gmtime_r(&t, &tm);
	out[0] = (char)('0' + (tm.tm_mon + 1) / 10);
	out[1] = (char)('0' + (tm.tm_mon + 1) % 10);
	out[2] = (char)('0' + tm.tm_mday / 10);
	out[3] = (char)('0' + tm.tm_mday % 10);
	out[4] = (char)('0' + tm.tm_hour / 10);
	out[5] = (char)('0' + tm.tm_hour % 10);
	out[6] = (char)('0' + tm.tm_min / 10);
	out[7] = (char)('0' + tm.tm_min % 10);
	out[8] = (char)('0' + tm.tm_sec / 10);
	out[9] = (char)('0' + tm.tm_sec % 10);
}

void fmt6(uint32_t v, char out[6])
{
	int i;

	for (i = 5; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

int link_write(struct tsw_engine *e, uint32_t link, const struct tsw_iso_msg *base,
	       const struct tsw_iso_edit *ed, unsigned n)
{
	struct issuer_link *l = &e->links[link];
	uint32_t before = outbuf_pending(&l->out);
	int r;

	r = outbuf_encode(&l->out, e->iss_profile, base, ed, n);
	if (r < 0) {
		if (r == -TSW_E_NO_SPACE) {
			TSW_COUNT(e->m->link_out_full);
			engine_event(e, TSW_EV_LINK_OUT_FULL, .link = link, .n1 = l->out.cap);
		}
		return r;
	}
	/* stream offsets survive the compaction inside outbuf_encode */
	l->last_pos = l->out.pos + before;
	l->last_len = outbuf_pending(&l->out) - before;
	l->last_tx_ns = e->now_ns;
	engine_mark_dirty(e, TSW_EP_LINK, link);
	return 0;
}

void link_track(struct tsw_engine *e, struct req *r)
{
	r->link_pos = e->links[r->link].last_pos;
	r->link_len = e->links[r->link].last_len;
}

/* A request whose frame never left the switch (not handed to the backend
 * either) when its link went down: the issuer never saw it, so it goes to
 * another signed-on host of the same issuer, byte for byte under the same
 * switch STAN, instead of a 91 and a reversal. False when it cannot
 * (sent or possibly sent, no other host, no room, STAN taken there). */
static bool move_unsent(struct tsw_engine *e, struct req *r)
{
	struct issuer_link *from = &e->links[r->link], *to;
	uint64_t unsent = from->out.pos + from->out.busy;
	uint32_t off, before;
	int link;

	if (r->kind != REQ_ACQ || !r->link_len || r->link_pos < unsent)
		return false;
	off = from->out.head + (uint32_t)(r->link_pos - from->out.pos);
	if (off + r->link_len > from->out.tail)
		return false;
	link = pick_link(e, from->issuer);
	if (link < 0)
		return false;
	to = &e->links[link];
	before = outbuf_pending(&to->out);
	if (outbuf_put(&to->out, from->out.data + off, r->link_len) < 0) {
		TSW_COUNT(e->m->link_out_full);
		return false;
	}
	if (pending_rekey(e, r, (uint16_t)link) < 0) {
		outbuf_unput(&to->out, r->link_len);
		return false;
	}
	r->link_pos = to->out.pos + before;
	from->pending--;
	to->pending++;
	to->last_tx_ns = e->now_ns;
	engine_mark_dirty(e, TSW_EP_LINK, (uint32_t)link);
	TSW_COUNT(e->m->requests_rerouted);
	return true;
}

int link_send_mgmt(struct tsw_engine *e, uint32_t link, const char *code3, bool echo)
{
	struct issuer_link *l = &e->links[link];
	struct tsw_iso_edit ed[4];
	char de7[10], stan[6];
	uint32_t s = stan_next(e, (uint16_t)link);
	int r;

	fmt_de7(e->wall_s, de7);
	fmt6(s, stan);
	ed[0] = (struct tsw_iso_edit){.field = 0, .len = 4, .data = (const uint8_t *)"0800"};
	ed[1] = (struct tsw_iso_edit){.field = 7, .len = 10, .data = (const uint8_t *)de7};
	ed[2] = (struct tsw_iso_edit){.field = 11, .len = 6, .data = (const uint8_t *)stan};
	ed[3] = (struct tsw_iso_edit){.field = 70, .len = 3, .data = (const uint8_t *)code3};
	r = link_write(e, link, NULL, ed, 4);
	if (r < 0)
		return r;
	l->mgmt_stan = s;
	l->mgmt_is_echo = echo;
	l->mgmt_deadline_ns = e->now_ns + (uint64_t)e->cfg.issuer_timeout_ms * NS_PER_MS;
	return 0;
}

static void set_state(struct tsw_engine *e, uint32_t link, uint8_t st)
{
	e->links[link].state = st;
	TSW_GAUGE_SET(e->m->link_up[link], st);
	TSW_GAUGE_SET(e->m->ready, tsw_engine_ready(e));
}

uint32_t tsw_engine_n_links(const struct tsw_engine *e)
{
	return e->n_links;
}

uint32_t tsw_engine_link_issuer(const struct tsw_engine *e, uint32_t link)
{
	return link < e->n_links ? link_issuer(e, link) : UINT32_MAX;
}

bool tsw_engine_link_wants_connect(const struct tsw_engine *e, uint32_t link, uint64_t now_ns)
{
	return link < e->n_links && e->links[link].state == LINK_DOWN &&
	       now_ns >= e->links[link].retry_at_ns;
}

void tsw_engine_link_connecting(struct tsw_engine *e, uint32_t link, uint64_t now_ns)
{
	if (link >= e->n_links)
		return;
	e->now_ns = now_ns;
	TSW_COUNT(e->m->link_reconnects[link]);
	set_state(e, link, LINK_CONNECTING);
}

void tsw_engine_link_up(struct tsw_engine *e, uint32_t link, uint64_t now_ns)
{
	struct issuer_link *l;

	if (link >= e->n_links)
		return;
	l = &e->links[link];
	e->now_ns = now_ns;
	tsw_iso_framer_reset(&l->fr);
	outbuf_reset(&l->out);
	set_state(e, link, LINK_UP);
	if (link_send_mgmt(e, link, DE70_SIGN_ON, false) < 0)
		TSW_COUNT(e->m->signon_failures);
}

void tsw_engine_link_down(struct tsw_engine *e, uint32_t link, uint64_t now_ns)
{
	struct issuer_link *l;
	uint64_t jitter;
	uint32_t i;

	if (link >= e->n_links)
		return;
	l = &e->links[link];
	e->now_ns = now_ns;
	/* down first: pick_link must not hand the link its own requests */
	set_state(e, link, LINK_DOWN);
	/* every request waiting on this link fails now (91), except those
	 * the issuer never got, which another of its hosts takes */
	for (i = 0; i < e->n_reqs && l->pending; i++) {
		struct req *r = &e->reqs[i];

		if (r->in_use && r->link == link && r->heap_idx != UINT32_MAX &&
		    !move_unsent(e, r))
			req_fail(e, r, 0);
	}
	explicit_bzero(l->out.data, l->out.cap);
	outbuf_reset(&l->out);
	/* a partial answer from the issuer carries the PAN too */
	tsw_iso_framer_reset(&l->fr);
	l->mgmt_stan = 0;
	/* full jitter over the upper half: backoff/2 .. backoff */
	jitter = l->backoff_ms / 2 ? xorshift(e) % (l->backoff_ms / 2 + 1) : 0;
	l->retry_at_ns = now_ns + (uint64_t)(l->backoff_ms / 2 + jitter) * NS_PER_MS;
	l->backoff_ms = l->backoff_ms * 2 > e->cfg.reconnect_max_ms ? e->cfg.reconnect_max_ms
								    : l->backoff_ms * 2;
	if (l->backoff_ms < e->cfg.reconnect_min_ms)
		l->backoff_ms = e->cfg.reconnect_min_ms;
	engine_event(e, TSW_EV_ISSUER_RECONNECT_BACKOFF, .link = link,
		     .n1 = (l->retry_at_ns - now_ns) / NS_PER_MS);
}

bool tsw_engine_ready(const struct tsw_engine *e)
{
	uint32_t i;

	if (e->cfg.n_issuers == 0)
		return false;
	if (e->cfg.n_routes == 0)
		return issuer_up(e, 0);
	for (i = 0; i < e->cfg.n_routes; i++)
		if (!issuer_up(e, e->cfg.routes[i].issuer))
			return false;
	return true;
}

static void mgmt_answer(struct tsw_engine *e, uint32_t link, const struct tsw_iso_msg *m)
{
	struct issuer_link *l = &e->links[link];
	uint32_t stan = 0;
	unsigned i;
	bool ok;

	if (!tsw_iso_has(m, 11) || m->f[11].len != 6)
		return;
	for (i = 0; i < 6; i++)
		stan = stan * 10 + (uint32_t)(tsw_iso_ptr(m, 11)[i] - '0');
	if (!l->mgmt_stan || stan != l->mgmt_stan)
		return;
	ok = tsw_iso_has(m, 39) && m->f[39].len == 2 && memcmp(tsw_iso_ptr(m, 39), "00", 2) == 0;
	l->mgmt_stan = 0;
	if (!ok) {
		char rc[3] = "";

		if (tsw_iso_has(m, 39) && m->f[39].len == 2)
			memcpy(rc, tsw_iso_ptr(m, 39), 2);
		TSW_COUNT(e->m->signon_failures);
		engine_event(e, TSW_EV_ISSUER_SIGNON_REFUSED, .link = link, .rc = rc,
			     .why = l->mgmt_is_echo ? "echo" : "sign_on",
			     .n1 = e->cfg.issuer_timeout_ms);
		/* retried when the deadline would have passed */
		l->mgmt_deadline_ns = e->now_ns + (uint64_t)e->cfg.issuer_timeout_ms * NS_PER_MS;
		if (l->state == LINK_SIGNED_ON)
			set_state(e, link, LINK_UP);
		return;
	}
	if (l->state == LINK_UP) {
		set_state(e, link, LINK_SIGNED_ON);
		l->backoff_ms = e->cfg.reconnect_min_ms;
		saf_poll(e); /* reversals owed to this issuer go first */
	}
}

/* An 0800 from the issuer (its own echo): answered 0810 DE39 00. */
static void mgmt_request(struct tsw_engine *e, uint32_t link, const struct tsw_iso_msg *m)
{
	static const uint8_t fields[] = {7, 11, 70};
	struct tsw_iso_edit ed[5];
	unsigned i, n = 0;

	ed[n++] = (struct tsw_iso_edit){.field = 0, .len = 4, .data = (const uint8_t *)"0810"};
	for (i = 0; i < sizeof(fields); i++)
		if (tsw_iso_has(m, fields[i]))
			ed[n++] = (struct tsw_iso_edit){.field = fields[i],
							.len = m->f[fields[i]].len,
							.data = tsw_iso_ptr(m, fields[i])};
	ed[n++] = (struct tsw_iso_edit){.field = 39, .len = 2, .data = (const uint8_t *)"00"};
	link_write(e, link, NULL, ed, n);
}

void engine_issuer_answer(struct tsw_engine *e, uint32_t link, const struct tsw_iso_msg *m);

int tsw_engine_link_input(struct tsw_engine *e, uint32_t link, const uint8_t *data, size_t len,
			  uint64_t now_ns)
{
	struct issuer_link *l;
	size_t off = 0;
	int r;

	if (link >= e->n_links)
		return -EINVAL;
	l = &e->links[link];
	e->now_ns = now_ns;
	TSW_COUNT_ADD(e->m->bytes_in, len);
	for (;;) {
		const uint8_t *frame;
		size_t flen;
		struct tsw_iso_msg m;

		r = tsw_iso_framer_next(&l->fr, data, len, &off, &frame, &flen);
		if (r == 0)
			return 0;
		if (r < 0) {
			TSW_COUNT(e->m->frames_refused);
			engine_event(e, TSW_EV_FRAME_REFUSED, .link = link, .why = "issuer",
				     .err = r, .n1 = e->iss_profile->max_frame);
			return r;
		}
		if (flen == 0)
			continue;
		if (tsw_iso_decode(e->iss_profile, frame, flen, &m) < 0) {
			TSW_COUNT(e->m->issuer_format_errors);
			continue;
		}
		if (memcmp(m.mti, "0810", 4) == 0)
			mgmt_answer(e, link, &m);
		else if (memcmp(m.mti, "0800", 4) == 0)
			mgmt_request(e, link, &m);
		else
			engine_issuer_answer(e, link, &m);
	}
}

void link_tick(struct tsw_engine *e, uint32_t link)
{
	struct issuer_link *l = &e->links[link];
	uint64_t now = e->now_ns;

	switch (l->state) {
	case LINK_UP:
		if (now >= l->mgmt_deadline_ns && link_send_mgmt(e, link, DE70_SIGN_ON, false) < 0)
			TSW_COUNT(e->m->signon_failures);
		break;
	case LINK_SIGNED_ON:
		if (l->mgmt_stan && now >= l->mgmt_deadline_ns) {
			/* the echo went unanswered: sign on again before
			 * sending more traffic */
			TSW_COUNT(e->m->echo_timeouts);
			engine_event(e, TSW_EV_ISSUER_ECHO_TIMEOUT, .link = link,
				     .n1 = e->cfg.issuer_timeout_ms);
			l->mgmt_stan = 0;
			set_state(e, link, LINK_UP);
			if (link_send_mgmt(e, link, DE70_SIGN_ON, false) < 0)
				TSW_COUNT(e->m->signon_failures);
		} else if (!l->mgmt_stan &&
			   now >= l->last_tx_ns + (uint64_t)e->cfg.echo_interval_ms * NS_PER_MS) {
			link_send_mgmt(e, link, DE70_ECHO, true);
		}
		break;
	case LINK_DOWN:
	case LINK_CONNECTING:
	case LINK_STATE_MAX:
		break;
	}
}

uint64_t link_next_deadline(const struct tsw_engine *e, uint32_t link)
{
	const struct issuer_link *l = &e->links[link];

	switch (l->state) {
	case LINK_DOWN:
		return l->retry_at_ns;
	case LINK_UP:
		return l->mgmt_deadline_ns;
	case LINK_SIGNED_ON:
		if (l->mgmt_stan)
			return l->mgmt_deadline_ns;
		return l->last_tx_ns + (uint64_t)e->cfg.echo_interval_ms * NS_PER_MS;
	case LINK_CONNECTING:
	case LINK_STATE_MAX:
		break;
	}
	return UINT64_MAX;
}
