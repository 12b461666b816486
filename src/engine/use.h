/* Limited-use reservations (tsw/state.h) and the requests parked until
 * their reservation is durable (internal to src/engine). */
#ifndef TSW_ENGINE_USE_H
#define TSW_ENGINE_USE_H

#include <stdbool.h>
#include <stdint.h>

#include "tsw/iso8583.h"
#include "tsw/token.h"

struct tsw_engine;

/* How often a worker with parked requests looks at their tickets when
 * nothing else wakes it (the state's eventfd usually does first). */
#define TSW_ENGINE_PARK_POLL_NS 1000000ull

/* Reserves a use of t. Returns 0 (*ret_durable says whether the request
 * may go now), -TSW_E_FULL (DOMAIN_USES), or another error (SYSTEM; also
 * when the engine has no state). */
int engine__use_reserve(struct tsw_engine *e, const struct tsw_token *t, uint64_t *ret_ticket,
			bool *ret_durable);
void engine__use_commit(struct tsw_engine *e, uint64_t ticket);
void engine__use_release(struct tsw_engine *e, uint64_t ticket);

/* What a parked request did before it waited, so that it is not done
 * twice when it runs again. */
struct resume {
	uint64_t wait_ticket; /* the ticket it waits for (the later of the two) */
	uint64_t use_ticket;  /* its limited-use reservation, when use_reserved */
	bool use_reserved;
	bool counter_done; /* its cryptogram's counter was accepted (card_crypto.c) */
};

int engine__park_init(struct tsw_engine *e);
void engine__park_free(struct tsw_engine *e);
/* Copies the request (its decoded body) and waits for rs->wait_ticket to be
 * durable; counts as in flight on its connection. Returns 0 or
 * -TSW_E_FULL (max_parked reached). */
int engine__park(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *m,
		 const struct resume *rs, uint64_t start_ns);
/* Sends on the parked requests whose ticket became durable. */
void engine__park_poll(struct tsw_engine *e);
uint32_t engine__park_pending(const struct tsw_engine *e);

/* request.c: runs the pipeline for a request (rs: it ran before and
 * waited; NULL: new). */
int engine__request(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *m,
		    uint64_t start_ns, const struct resume *rs);

#endif
