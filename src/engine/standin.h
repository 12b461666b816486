/* Stand-in processing (standin.c; internal to src/engine): approvals the
 * switch gives on an unavailable issuer's behalf, each reported to that
 * issuer by a durable advice in the SAF queue before the acquirer hears
 * of it. docs/engine.md, "Stand-in", has the rules. */
#ifndef TSW_ENGINE_STANDIN_H
#define TSW_ENGINE_STANDIN_H

#include <stdbool.h>
#include <stdint.h>

#include "tsw/metrics.h"

struct tsw_engine;
struct req;

/* Sets up the engine's exposure table (e->standin_exp when set:
 * tsw_engine_config.standin_exposure; else one of its own of
 * cfg.standin_max_tokens) and its approval-code counter:
 * 0 or -ENOMEM. */
int engine__standin_init(struct tsw_engine *e);
void engine__standin_free(struct tsw_engine *e);

/* True when stand-in may be tried for a request of MTI class cls whose
 * issuer has no signed-on link (timed_out false) or timed out (true). */
bool engine__standin_wanted(const struct tsw_engine *e, unsigned cls, bool timed_out);

/* Tries to approve r by stand-in: r is a 0100/0200 of an open
 * connection (r->link the issuer's index, r->sent_to_issuer whether the
 * issuer got it, r->pos_mode and r->assurance set). When the rules allow
 * it (its echoed DE4, presentment mode and assurance level) and the
 * token's exposure over the window leaves room, the exposure is charged,
 * a 0120/0220 advice queued, and r held until that advice is durable
 * (delivery.c), when the approval (DE39 00, a DE38 of the switch's own,
 * DE44 STANDIN) goes out: returns true, r is the stand-in's now.
 * Otherwise returns false with nothing charged or queued and the
 * refusal counted: the caller answers 91 as without stand-in. */
bool engine__standin_try(struct tsw_engine *e, struct req *r);

#endif
