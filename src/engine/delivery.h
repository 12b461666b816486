/* What the acquirer is owed, and when (delivery.c; internal to
 * src/engine). Two rules of money: an answer that leaves a reversal
 * behind goes out only once that reversal is on disk, and an approval
 * that never leaves the switch's output buffer is reversed. */
#ifndef TSW_ENGINE_DELIVERY_H
#define TSW_ENGINE_DELIVERY_H

#include <stdbool.h>
#include <stdint.h>

#include "tsw/authz.h"

struct tsw_engine;
struct req;

/* Answers r's acquirer locally with reason (91, 96) once the SAF item id
 * is durable, or after cfg.saf_durable_wait_ms when the state's writer
 * has not committed it by then (answers_held_timeouts). r has left the
 * pending table; it stays allocated (and in flight on its connection)
 * until it is answered. Reason TSW_AUTHZ_STANDIN: a stand-in approval
 * waiting for its advice (engine__standin_release() answers it). */
void engine__held_answer(struct tsw_engine *e, struct req *r, enum tsw_authz_reason reason,
			 uint64_t id);
/* Answers the held requests whose reversal became durable or whose wait
 * ran out. Cheap when none is held. */
void engine__held_poll(struct tsw_engine *e);
uint32_t engine__held_pending(const struct tsw_engine *e);
/* Drops every held request without an answer (their connections are
 * gone; the reversals are queued already; a held stand-in's advice is
 * followed by a reversal). */
void engine__held_drop_all(struct tsw_engine *e);

/* Held stand-in r comes out of the held FIFO (delivery.c): durable, its
 * advice is on disk; alive, its connection is still open. The approval
 * is written when both hold, and the use committed; otherwise
 * (connection gone, or the wait ran out: 91, no approval) the advice
 * stays queued and a reversal of the stand-in approval follows it. Frees
 * r, or keeps it until its approval is sent (engine__unsent_track). */
void engine__standin_release(struct tsw_engine *e, struct req *r, bool durable, bool alive);

/* r's approval (a 0100/0200 answered 00, 08, 10, 11 or 16) was just
 * written to its acquirer connection's output buffer: r is kept until
 * the backend reports those bytes sent (engine__unsent_sent), and reversed if
 * the connection closes first (engine__unsent_abandon). */
void engine__unsent_track(struct tsw_engine *e, struct req *r);
/* The connection's output advanced: frees the approvals now sent. */
void engine__unsent_sent(struct tsw_engine *e, uint32_t slot);
/* The connection closed: every approval still in its buffer is reversed
 * (counted in answers_undelivered_reversed) and freed. */
void engine__unsent_abandon(struct tsw_engine *e, uint32_t slot);

/* Queues the reversal of approval r that its acquirer will never get;
 * return_use: the ack gives r's limited use back. Counts
 * answers_undelivered_reversed, or _unqueued when no reversal could be
 * queued (no state, queue full: the issuer keeps the money). */
void engine__reverse_undelivered(struct tsw_engine *e, const struct req *r, bool return_use);

#endif
