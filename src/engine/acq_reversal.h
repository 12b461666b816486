/* Acquirer reversals (acq_reversal.c; internal to src/engine). */
#ifndef TSW_ENGINE_ACQ_REVERSAL_H
#define TSW_ENGINE_ACQ_REVERSAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/config.h"
#include "tsw/iso8583.h"

struct tsw_engine;
struct req;
struct acq_rev_match;

/* DE90: original MTI 4, STAN 6, DE7 10, DE32 11, DE33 11. */
#define TSW_ENGINE_DE90_LEN 42u
#define TSW_ENGINE_DE90_OFF_STAN 4u
#define TSW_ENGINE_DE90_OFF_DE7 10u

/* Keeps e->acq_rev when set (tsw_engine_config.acq_reversals, shared
 * by every worker), or makes a table of its own of
 * cfg.acq_reversal_memory originals (direct-mapped: a newer original may
 * push an older one out, counted in acq_reversals_evicted) and as many
 * reversal links; sets the capacity gauge: 0 or -ENOMEM. */
int engine__acq_rev_init(struct tsw_engine *e);
void engine__acq_rev_free(struct tsw_engine *e);
/* Originals the engine's table holds (its size, not its fill). */
uint32_t engine__acq_rev_capacity(const struct tsw_engine *e);
/* The key a message m of token on acquirer connection slot is
 * remembered or looked up under: (token, m's DE11, DE7, DE41, DE32, the
 * connection's peer address); 0 when m lacks DE11 or a 10-digit DE7.
 * Starts loading the key's slot: call it before the work that precedes
 * engine__acq_rev_remember. */
uint64_t engine__acq_rev_key(const struct tsw_engine *e, uint32_t slot, const char *token,
			     size_t token_len, const struct tsw_iso_msg *m);
/* The original m of key h (acq_rev_key) went to the issuer with switch
 * STAN stan and m's DE7. */
void engine__acq_rev_remember(struct tsw_engine *e, uint64_t h, const struct tsw_iso_msg *m,
			      uint32_t stan);
/* For a reversal m of token on connection slot: when its DE90 names an
 * original remembered for the same acquirer (DE32, peer address), writes
 * the DE90 the issuer must see (the switch STAN and DE7 of the original
 * as sent) to out, the original it matched to *ret_match (kept in the
 * reversal's request for engine__acq_rev_take_use) and returns 1; 0 when DE90 is
 * absent, not 42 bytes or unknown (it is then forwarded as it came, and
 * *ret_match is untouched). */
int engine__acq_rev_de90(struct tsw_engine *e, uint32_t slot, const char *token, size_t token_len,
			 const struct tsw_iso_msg *m, char out[TSW_ENGINE_DE90_LEN],
			 struct acq_rev_match *ret_match);
/* The issuer approved original r (0100/0200, r->acq_rev_key) and its
 * limited use was committed: the remembered original is flagged, and
 * r->use_flagged says whether it was (not when it was pushed out of the
 * table, or other writers held its slot). */
void engine__acq_rev_use_consumed(struct tsw_engine *e, struct req *r);
/* Approval r (its use committed, engine__acq_rev_use_consumed called) never
 * reached its acquirer and the switch reverses it itself: true when that
 * reversal's ack must give the use back. True when r's flag was never
 * set (nobody else can give the use back), or is still set (it is
 * cleared: an acquirer reversal then gives nothing back); false when it
 * is gone (taken by an acquirer reversal answered 00, or pushed out of
 * the table: either may have given it back) or other workers hold the
 * slot: the use stays spent, never given back twice. */
bool engine__acq_rev_disown_use(struct tsw_engine *e, const struct req *r);
/* The issuer answered reversal r 00: true when r matched (through DE90,
 * r->rev_match) an original that is still flagged; the flag is cleared,
 * so a repeated reversal of the same original returns false, and so does
 * one that matched nothing. The caller gives the use back. */
bool engine__acq_rev_take_use(struct tsw_engine *e, const struct req *r);

#endif
