/* Issuer approvals held until the state record they depend on is durable
 * (held_approval.c; internal to src/engine). A request that records a
 * limited use or a card's ATC in the state goes to the issuer at once;
 * an approval must not reach the acquirer before that record is on disk,
 * so the issuer's answer waits here for the state's group commit. */
#ifndef TSW_ENGINE_HELD_APPROVAL_H
#define TSW_ENGINE_HELD_APPROVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "answer_guard.h"
#include "engine_int.h"
#include "tsw/iso8583.h"
#include "tsw/state.h"

int engine__approval_init(struct tsw_engine *e);
void engine__approval_free(struct tsw_engine *e);

/* Gives r, about to be forwarded before state ticket is durable, a slot
 * for its answer (cfg.max_parked per worker). 0, or -TSW_E_FULL (counted
 * in parked_full, event parked_full): the request is declined instead.
 * engine__req_free gives the slot back. */
int engine__approval_slot_take(struct tsw_engine *e, struct req *r, uint64_t ticket);
void engine__approval_slot_drop(struct tsw_engine *e, struct req *r);

/* True when the issuer's answer (DE39 rc) to r must wait: an approval
 * while r's record is not durable (inline: every answer asks). */
static inline bool engine__approval_must_wait(const struct tsw_engine *e, const struct req *r,
					      const char *rc)
{
	return r->appr_slot && engine__rc_approved(rc) &&
	       !tsw_state_durable(e->state, r->rec_ticket);
}
/* Keeps a copy of m for r (out of the pending table already) until r's
 * record is durable (then delivered as any answer), the writer degrades
 * or saf_durable_wait_ms passes (then reversed: 96 STATE_UNAVAILABLE once
 * the reversal is durable), or r's connection closes (reversed). */
void engine__approval_hold(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
			   const char *rc);
/* A held answer that may wait no longer: m, its DE39 rc (both valid
 * until its request is freed), and whether it goes to the acquirer
 * (deliver: its record is durable, or its connection is gone and the
 * usual undelivered path reverses it) or is refused (the writer degraded
 * or saf_durable_wait_ms passed: counted, event approval_record_unwritten). */
struct held_answer {
	const struct tsw_iso_msg *m;
	const char *rc;
	bool deliver;
};
/* The next held request from *cursor on (0 to start; it advances) that
 * may wait no longer, taken out of the list with its answer in *ret, or
 * NULL when none is left. answer.c settles it (engine__approval_poll). */
struct req *engine__approval_next(struct tsw_engine *e, uint32_t *cursor, struct held_answer *ret);
/* Approvals held now (inline: every loop iteration asks). */
static inline uint32_t engine__approval_pending(const struct tsw_engine *e)
{
	return e->n_appr_list;
}

#endif
