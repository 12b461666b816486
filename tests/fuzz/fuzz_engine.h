/* The engine as the two engine fuzz targets drive it, without sockets,
 * threads or a state env: a vault made once per process in the scratch
 * dir, an engine per input with one acquirer connection and one issuer
 * link signed on, and checks on everything the engine writes. */
#ifndef TSW_FUZZ_ENGINE_H
#define TSW_FUZZ_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/engine.h"
#include "tsw/iso8583.h"
#include "tsw/metrics.h"

/* Tokens of the vault (token BIN 4000): PANs in BIN 512345. */
enum fe_token {
	FE_OK,	      /* active, any merchant */
	FE_SUSPENDED, /* suspended */
	FE_AMOUNT,    /* amount limit 1000 */
	FE_T4T,	      /* token-for-token from FE_OK */
	FE_LIMITED,   /* max_uses 1: declined 96 without a state */
	FE_TOKEN_MAX
};

extern char fe_tokens[FE_TOKEN_MAX][20];
extern char fe_pans[FE_TOKEN_MAX][20];

/* Profile variants: the default (bin2 header, 8 KiB), ascii4, and both
 * with a non-default max_frame. */
enum fe_profile {
	FE_PROF_DEFAULT,
	FE_PROF_ASCII4,
	FE_PROF_SMALL,	      /* default, max_frame 1024 */
	FE_PROF_ASCII4_LARGE, /* ascii4, max_frame 9999: its header's ceiling */
	FE_PROF_MAX
};

struct fe {
	const struct tsw_iso_profile *acq, *iss;
	struct tsw_metrics_shard m;
	struct tsw_engine_config cfg;
	struct tsw_engine *e;
	uint64_t now;
	int slot;
	bool acq_closed;
	/* what the acquirer sent so far: a PAN in an answer is a leak only
	 * when the acquirer did not send it itself */
	const uint8_t *acq_in;
	size_t acq_in_len;
	unsigned acq_frames_in; /* non-empty frames the acquirer sent */
	unsigned answers;	/* non-empty frames the acquirer got */
	unsigned iss_requests;	/* requests the issuer got (sign-on excluded) */
	/* the PAN an answer must not carry (hook or result NULL: every PAN of
	 * the vault the acquirer did not send) */
	const char *(*answer_pan)(const struct tsw_iso_msg *m);
	/* called with each answer the acquirer gets (NULL: none) */
	void (*on_answer)(const struct tsw_iso_msg *m);
};

const struct tsw_iso_profile *fe_profile(enum fe_profile which);
/* Creates the engine for acq/iss (vault made on the first call), opens the
 * acquirer connection and signs the link on. */
void fe_start(struct fe *f, enum fe_profile acq, enum fe_profile iss);
void fe_stop(struct fe *f);
/* Feeds len bytes to the acquirer connection in chunks of chunk bytes;
 * after each one, issuer output is collected (and answered when answer,
 * rc "00") and acquirer output is collected and checked. Stops at an
 * error the backend would close on (the connection is then closed). */
void fe_acq_feed(struct fe *f, const uint8_t *data, size_t len, size_t chunk, bool answer);
/* Feeds len bytes to the issuer link in chunks; as fe_acq_feed. A
 * framing error takes the link down (as the backend does). */
void fe_link_feed(struct fe *f, const uint8_t *data, size_t len, size_t chunk);
/* Collects and checks both sides' output; answer: the issuer answers
 * each request it got (rc "00"). */
void fe_pump(struct fe *f, bool answer);
/* Advances the clock by ms, ticks, pumps. */
void fe_advance(struct fe *f, uint64_t ms, bool answer);
/* Builds a 0100 for token t with STAN stan (framed by the acquirer
 * profile) into out; returns the frame's length. */
size_t fe_auth(struct fe *f, enum fe_token t, const char *stan, uint8_t *out, size_t cap);
/* Takes what the issuer link has to send (framed by the issuer profile)
 * into *ret (malloc'ed, freed by the caller), checked like fe_pump does. */
size_t fe_take_link(struct fe *f, uint8_t **ret);

#endif
