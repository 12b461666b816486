/* Limited-use tokens: a use is reserved in the switch's state before the
 * request is forwarded, and the request waits (parked, a copy of its bytes
 * in a preallocated slot) until the reservation is on disk, so a crash
 * never lets a use be spent twice. Approved: commit; anything else: the
 * use is given back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "use.h"
#include "tsw/authz.h"
#include "tsw/error.h"
#include "tsw/state.h"

struct parked {
	uint8_t *frame;
	uint32_t len;
	uint32_t slot, gen;
	struct resume rs;
	uint64_t start_ns;
	uint64_t parked_ns;
};

int engine__use_reserve(struct tsw_engine *e, const struct tsw_token *t, uint64_t *ret_ticket,
			bool *ret_durable)
{
	uint64_t ticket;
	int r;

	if (!e->state)
		return -ENOTSUP;
	r = tsw_state_reserve(e->state, t->token, t->token_len, t->max_uses, &ticket);
	if (r < 0)
		return r;
	*ret_ticket = ticket;
	*ret_durable = tsw_state_durable(e->state, ticket);
	return 0;
}

int tsw_engine_add_state_waker(struct tsw_engine *e, int eventfd)
{
	if (!e->state)
		return 0;
	return tsw_state_add_waker(e->state, eventfd);
}

void engine__use_commit(struct tsw_engine *e, uint64_t ticket)
{
	if (e->state)
		tsw_state_commit_use(e->state, ticket);
}

void engine__use_release(struct tsw_engine *e, uint64_t ticket)
{
	if (e->state)
		tsw_state_release(e->state, ticket);
}

int engine__park_init(struct tsw_engine *e)
{
	uint32_t i, n = e->cfg.max_parked;

	e->parked = calloc(n, sizeof(*e->parked));
	e->park_list = malloc(sizeof(*e->park_list) * n);
	e->park_free = malloc(sizeof(*e->park_free) * n);
	if (!e->parked || !e->park_list || !e->park_free)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		e->parked[i].frame = malloc(e->acq_profile->max_frame);
		if (!e->parked[i].frame)
			return -ENOMEM;
		e->park_free[i] = n - 1 - i;
	}
	e->n_park_free = n;
	e->n_parked = 0;
	return 0;
}

void engine__park_free(struct tsw_engine *e)
{
	uint32_t i;

	if (e->parked)
		for (i = 0; i < e->cfg.max_parked; i++)
			free(e->parked[i].frame);
	free(e->parked);
	free(e->park_list);
	free(e->park_free);
}

uint32_t engine__park_pending(const struct tsw_engine *e)
{
	return e->n_parked;
}

int engine__park(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *m,
		 const struct resume *rs, uint64_t start_ns)
{
	struct parked *p;
	uint32_t idx;

	if (!e->n_park_free || m->len > e->acq_profile->max_frame) {
		TSW_COUNT(e->m->parked_full);
		engine_event(e, TSW_EV_PARKED_FULL, .n1 = e->cfg.max_parked);
		return -TSW_E_FULL;
	}
	idx = e->park_free[--e->n_park_free];
	p = &e->parked[idx];
	memcpy(p->frame, m->buf, m->len);
	p->len = m->len;
	p->slot = slot;
	p->gen = e->conns[slot].gen;
	p->rs = *rs;
	p->start_ns = start_ns;
	p->parked_ns = e->now_ns;
	e->park_list[e->n_parked++] = idx;
	e->conns[slot].inflight++;
	TSW_GAUGE_INC(e->m->parked);
	return 0;
}

/* A parked request that will not run again gives its use back (an
 * accepted counter stays: the card did spend it). */
static void release_parked(struct tsw_engine *e, const struct parked *p)
{
	if (p->rs.use_reserved)
		engine__use_release(e, p->rs.use_ticket);
}

void engine__park_poll(struct tsw_engine *e)
{
	uint32_t i = 0;

	while (i < e->n_parked) {
		uint32_t idx = e->park_list[i];
		struct parked *p = &e->parked[idx];
		struct acq_conn *c = &e->conns[p->slot];
		bool gone = c->state != ACQ_OPEN || c->gen != p->gen;
		struct tsw_iso_msg m;
		bool expired = false, unavailable = false;

		if (!gone && !tsw_state_durable(e->state, p->rs.wait_ticket)) {
			/* the state's writer never committed: after
			 * issuer_timeout_ms the request is answered 96 SYSTEM;
			 * at once STATE_UNAVAILABLE while the writer is degraded
			 * (it will not commit soon) */
			unavailable = tsw_state_degraded(e->state);
			expired = unavailable || e->now_ns - p->parked_ns >=
						     (uint64_t)e->cfg.issuer_timeout_ms * NS_PER_MS;
			if (!expired) {
				i++;
				continue;
			}
		}
		/* out of the list first: the pipeline may engine__park again */
		e->park_list[i] = e->park_list[--e->n_parked];
		e->park_free[e->n_park_free++] = idx;
		TSW_GAUGE_DEC(e->m->parked);
		if (gone) {
			release_parked(e, p);
			TSW_COUNT(e->m->answers_conn_gone);
			continue;
		}
		if (c->inflight)
			c->inflight--;
		if (expired) {
			enum tsw_authz_reason why =
			    unavailable ? TSW_AUTHZ_STATE_UNAVAILABLE : TSW_AUTHZ_SYSTEM;
			struct echo ec;

			release_parked(e, p);
			if (!unavailable)
				TSW_COUNT(e->m->park_timeouts);
			TSW_COUNT(e->m->declines[why]);
			if (tsw_iso_decode(e->acq_profile, p->frame, p->len, &m) == 0) {
				engine__echo_from_msg(&ec, &m);
				engine__answer_local(e, p->slot, &ec, tsw_authz_rc(why),
						     tsw_authz_reason_name(why));
			}
			engine__acq_resume_later(e, p->slot);
			continue;
		}
		/* it decoded before it was parked; the bytes are unchanged */
		if (tsw_iso_decode(e->acq_profile, p->frame, p->len, &m) < 0) {
			release_parked(e, p);
			continue;
		}
		engine__request(e, p->slot, &m, p->start_ns, &p->rs);
		engine__acq_resume_later(e, p->slot);
	}
}
