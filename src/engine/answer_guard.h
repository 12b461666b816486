/* Guards on issuer answers (answer_guard.c; internal to src/engine). */
#ifndef TSW_ENGINE_ANSWER_GUARD_H
#define TSW_ENGINE_ANSWER_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/iso8583.h"

struct req;

/* DE39 of a duplicate transmission (dup.c). */
#define TSW_ENGINE_RC_DUPLICATE "94"

/* Fields dropped from every answer to the acquirer. */
#define TSW_ENGINE_ANSWER_DROP 6u
extern const uint8_t tsw_engine_answer_drop[TSW_ENGINE_ANSWER_DROP];

/* Appends a removal edit for each dropped field m has; returns how many
 * (at most TSW_ENGINE_ANSWER_DROP). */
unsigned engine__answer_drop_edits(const struct tsw_iso_msg *m, struct tsw_iso_edit *ed);
/* A random secret for the PAN fingerprints of one engine. */
uint64_t engine__pan_fp_seed_new(void);
/* The keyed fingerprint of a PAN (len digits). */
uint64_t engine__pan_fp(uint64_t seed, const char *pan, size_t len);
/* True when some run of pan_len ASCII digits in p[0, n) has fingerprint fp.
 * last4 (the PAN's last 4 digits, which masking shows anyway) filters the
 * windows first, so an answer whose fixed numeric fields form one long
 * digit run costs a compare per window, not a hash per window. */
bool engine__pan_fp_scan(uint64_t seed, uint64_t fp, size_t pan_len, const char last4[4],
			 const uint8_t *p, size_t n);
/* The same search for the PAN as packed BCD (two digits a byte) at either
 * nibble alignment, whatever pads it or follows it: F or 0 padding, the D
 * separator of track-2 BCD (DE55 tags 57, 9F6B). */
bool engine__pan_fp_scan_bcd(uint64_t seed, uint64_t fp, size_t pan_len, const char last4[4],
			     const uint8_t *p, size_t n);
/* True when ans (an issuer's MTI) is the response to req (the MTI the
 * request went out with): 0110 to 0100 or 0101, 0210 to 0200, 0130 to
 * 0120, 0230 to 0220, 0410 to 0400 or 0401, 0430 to 0420, ...; a repeat
 * may also be answered with its origin digit (0411 to 0401). */
bool engine__answer_mti_matches(const char req[4], const char ans[4]);
/* EMV tags dropped from DE55 on the way to the acquirer: 5A (PAN), 57
 * (track 2 equivalent), 5F24 (expiry), 9F6B (track 2). */
#define TSW_ENGINE_DE55_CARD_TAGS 4u
extern const uint32_t tsw_engine_de55_card_tags[TSW_ENGINE_DE55_CARD_TAGS];
/* True for the response codes that approve (a limited use is spent):
 * 00, 08, 10 (partial), 11, 16. rc is NUL-terminated. */
bool engine__rc_approved(const char *rc);
/* False when the answer echoes DE4 (except with rc 10), DE37 or DE41 with
 * a value other than the request's: it answers another request. */
bool engine__answer_matches(const struct req *r, const struct tsw_iso_msg *m, const char *rc);

#endif
