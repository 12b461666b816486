/* The issuer output side: routing (a PAN's BIN to an issuer, the issuer
 * to the signed-on link of one of its hosts with the fewest requests in
 * flight), every frame written to a link (engine__link_write; where a request's
 * frame lies is tracked so that an unsent one moves to another host when
 * its link goes down), and the sign-on and echo 0800s. Calls go down
 * only: outbuf.c, the dirty queue, pending.c (STANs), rewrite.c (DE7,
 * DE11), event.c. Link state and what arrives on a link: link_input.c.
 */
#include <string.h>

#include "engine_int.h"
#include "tsw/error.h"

int engine__route(const struct tsw_engine *e, const char *pan, size_t pan_len)
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

int engine__pick_link(struct tsw_engine *e, uint32_t issuer)
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

int engine__link_write(struct tsw_engine *e, uint32_t link, const struct tsw_iso_msg *base,
		       const struct tsw_iso_edit *ed, unsigned n)
{
	struct issuer_link *l = &e->links[link];
	uint32_t before = engine__outbuf_pending(&l->out);
	int r;

	r = engine__outbuf_encode(&l->out, e->iss_profile, base, ed, n);
	if (r < 0) {
		if (r == -TSW_E_NO_SPACE) {
			TSW_COUNT(e->m->link_out_full);
			engine_event(e, TSW_EV_LINK_OUT_FULL, .link = link, .n1 = l->out.cap);
		}
		return r;
	}
	/* stream offsets survive the compaction inside engine__outbuf_encode */
	l->last_pos = l->out.pos + before;
	l->last_len = engine__outbuf_pending(&l->out) - before;
	l->last_tx_ns = e->now_ns;
	engine__mark_dirty(e, TSW_EP_LINK, link);
	return 0;
}

void engine__link_track(struct tsw_engine *e, struct req *r)
{
	r->link_pos = e->links[r->link].last_pos;
	r->link_len = e->links[r->link].last_len;
}

/* A request whose frame never left the switch (not handed to the backend
 * either) when its link went down: the issuer never saw it, so it goes to
 * another signed-on host of the same issuer, byte for byte under the same
 * switch STAN, instead of a 91 and a reversal. False when it cannot
 * (sent or possibly sent, no other host, no room, STAN taken there). */
bool engine__move_unsent(struct tsw_engine *e, struct req *r)
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
	link = engine__pick_link(e, from->issuer);
	if (link < 0)
		return false;
	to = &e->links[link];
	before = engine__outbuf_pending(&to->out);
	if (engine__outbuf_put(&to->out, from->out.data + off, r->link_len) < 0) {
		TSW_COUNT(e->m->link_out_full);
		return false;
	}
	if (engine__pending_rekey(e, r, (uint16_t)link) < 0) {
		engine__outbuf_unput(&to->out, r->link_len);
		return false;
	}
	r->link_pos = to->out.pos + before;
	from->pending--;
	to->pending++;
	to->last_tx_ns = e->now_ns;
	engine__mark_dirty(e, TSW_EP_LINK, (uint32_t)link);
	TSW_COUNT(e->m->requests_rerouted);
	return true;
}

int engine__link_send_mgmt(struct tsw_engine *e, uint32_t link, const char *code3, bool echo)
{
	struct issuer_link *l = &e->links[link];
	struct tsw_iso_edit ed[4];
	char de7[10], stan[6];
	uint32_t s = engine__stan_next(e, (uint16_t)link);
	int r;

	engine__fmt_de7(e->wall_s, de7);
	engine__fmt6(s, stan);
	ed[0] = (struct tsw_iso_edit){.field = 0, .len = 4, .data = (const uint8_t *)"0800"};
	ed[1] = (struct tsw_iso_edit){.field = 7, .len = 10, .data = (const uint8_t *)de7};
	ed[2] = (struct tsw_iso_edit){.field = 11, .len = 6, .data = (const uint8_t *)stan};
	ed[3] = (struct tsw_iso_edit){.field = 70, .len = 3, .data = (const uint8_t *)code3};
	r = engine__link_write(e, link, NULL, ed, 4);
	if (r < 0)
		return r;
	l->mgmt_stan = s;
	l->mgmt_is_echo = echo;
	l->mgmt_deadline_ns = e->now_ns + (uint64_t)e->cfg.issuer_timeout_ms * NS_PER_MS;
	return 0;
}
