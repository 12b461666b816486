/* The issuer input side: link state as the backend reports it (connect,
 * up, down with reconnect backoff and jitter), readiness, what arrives
 * on a link (sign-on and echo answers, the issuer's own 0800, request
 * answers to answer.c) and the link timers (sign-on retry, echo, echo
 * timeout). Frames go out through link_output.c; reversals owed to
 * issuers are in saf.c. Requests a call completes resume their
 * connections' input before it returns (acq_input.c).
 */
#include <errno.h>
#include <string.h>

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

/* True when some link of issuer is signed on. */
static bool issuer_up(const struct tsw_engine *e, uint32_t issuer)
{
	uint32_t i;

	for (i = 0; i < e->n_links; i++)
		if (e->links[i].issuer == issuer && e->links[i].state == LINK_SIGNED_ON)
			return true;
	return false;
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
	engine__outbuf_reset(&l->out);
	set_state(e, link, LINK_UP);
	if (engine__link_send_mgmt(e, link, DE70_SIGN_ON, false) < 0)
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
	/* down first: engine__pick_link must not hand the link its own requests */
	set_state(e, link, LINK_DOWN);
	/* every request waiting on this link fails now (91), except those
	 * the issuer never got, which another of its hosts takes */
	for (i = 0; i < e->n_reqs && l->pending; i++) {
		struct req *r = &e->reqs[i];

		if (r->in_use && r->link == link && r->heap_idx != UINT32_MAX &&
		    !engine__move_unsent(e, r))
			engine__req_fail(e, r, 0);
	}
	explicit_bzero(l->out.data, l->out.cap);
	engine__outbuf_reset(&l->out);
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
	acq_resume_due(e);
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
		engine__saf_poll(e); /* reversals owed to this issuer go first */
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
	engine__link_write(e, link, NULL, ed, n);
}

void engine__issuer_answer(struct tsw_engine *e, uint32_t link, const struct tsw_iso_msg *m);

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
			break;
		if (r < 0) {
			TSW_COUNT(e->m->frames_refused);
			engine_event(e, TSW_EV_FRAME_REFUSED, .link = link, .why = "issuer",
				     .err = r, .n1 = e->iss_profile->max_frame);
			break;
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
			engine__issuer_answer(e, link, &m);
	}
	acq_resume_due(e);
	return r;
}

void engine__link_tick(struct tsw_engine *e, uint32_t link)
{
	struct issuer_link *l = &e->links[link];
	uint64_t now = e->now_ns;

	switch (l->state) {
	case LINK_UP:
		if (now >= l->mgmt_deadline_ns &&
		    engine__link_send_mgmt(e, link, DE70_SIGN_ON, false) < 0)
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
			if (engine__link_send_mgmt(e, link, DE70_SIGN_ON, false) < 0)
				TSW_COUNT(e->m->signon_failures);
		} else if (!l->mgmt_stan &&
			   now >= l->last_tx_ns + (uint64_t)e->cfg.echo_interval_ms * NS_PER_MS) {
			engine__link_send_mgmt(e, link, DE70_ECHO, true);
		}
		break;
	case LINK_DOWN:
	case LINK_CONNECTING:
	case LINK_STATE_MAX:
		break;
	}
}

uint64_t engine__link_next_deadline(const struct tsw_engine *e, uint32_t link)
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
