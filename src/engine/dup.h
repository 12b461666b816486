/* Duplicate acquirer requests in flight (dup.c; internal to src/engine). */
#ifndef TSW_ENGINE_DUP_H
#define TSW_ENGINE_DUP_H

#include <stdbool.h>

#include "tsw/iso8583.h"

struct tsw_engine;
struct req;

/* Allocates the buckets (a power of two >= max_pending): 0 or -ENOMEM. */
int engine__dup_init(struct tsw_engine *e);
void engine__dup_free(struct tsw_engine *e);
/* True when a request of connection slot (its current generation) with
 * m's DE11 and DE7 (absent: empty) is in flight to an issuer. */
bool engine__dup_in_flight(const struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *m);
/* Adds a forwarded REQ_ACQ request (acq_slot, acq_gen and echo set). */
void engine__dup_add(struct tsw_engine *e, struct req *r);
/* Takes r out (no-op when it is not in); engine__req_free() calls it. */
void engine__dup_remove(struct tsw_engine *e, struct req *r);

#endif
