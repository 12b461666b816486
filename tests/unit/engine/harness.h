/* Test harness for the engine: a vault in a temp dir, an engine with one
 * or two issuer links signed on, and helpers that build, frame, send and
 * collect ISO 8583 messages on both sides (no sockets). */
#ifndef TSW_TEST_ENGINE_HARNESS_H
#define TSW_TEST_ENGINE_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/engine.h"
#include "tsw/iso8583.h"
#include "tsw/metrics.h"
#include "tsw/state.h"
#include "tsw/token.h"

#define H_MAX_MSGS 256
#define H_BUF 65536

/* Tokens of the test vault (token BIN range 4000). */
enum h_token {
	H_OK, /* active, any merchant, all modes */
	H_SUSPENDED,
	H_DELETED,
	H_EXPIRED,	/* token expiry 2001 */
	H_MERCHANT,	/* merchant MERCHANT0000001 only */
	H_POS,		/* contactless only */
	H_DEVICE,	/* device-bound, DEV-1 bound */
	H_AMOUNT,	/* amount limit 1000 */
	H_LIMITED,	/* max_uses 1 */
	H_T4T,		/* token-for-token from H_OK */
	H_ROUTE2,	/* PAN in BIN 6011: routed to issuer 1 when routes exist */
	H_CHIP,		/* a chip/contactless ARQC required: CVN 18, PSN 01 */
	H_CHIP10,	/* CVN 10, PSN 00 */
	H_CHIP_LIMITED, /* CVN 20, PSN 02, max_uses 1 */
	H_TOKEN_MAX
};

struct h_token_info {
	char token[20];
	char pan[20];
};
extern struct h_token_info h_tokens[H_TOKEN_MAX];

struct h_msgs {
	uint8_t buf[H_BUF];
	size_t len;
	unsigned n;
	struct tsw_iso_msg m[H_MAX_MSGS];
};

struct h {
	char dir[64];
	struct tsw_iso_profile prof;
	struct tsw_vault *vault;
	struct tsw_state *state;
	struct tsw_state_config scfg; /* its clock is h->now */
	struct tsw_metrics_shard m;
	struct tsw_engine_config cfg;
	struct tsw_engine *e;
	uint64_t now;
	uint64_t clock_lag_ns; /* the engine's latency clock reads now + this */
	int slot; /* an open acquirer connection */
	int state_efd; /* woken by the state's writer after each commit */
	struct tsw_hsm *hsm;	    /* h_card_keys(): the engine's card keys */
	struct tsw_card_keys *keys; /* the harness's reference (h_fini drops it) */
	int stall_pid;		    /* h_state_stall(): the state-stall child, 0: none */
	int stall_in;		    /* ... its standard input */
};

/* Creates the vault (once per process), the state, and fills cfg with
 * small defaults (1 issuer, no routes). */
void h_init(struct h *h);
/* Creates the engine from h->cfg, opens one acquirer connection, and signs
 * every link on. */
void h_start(struct h *h);
void h_fini(struct h *h);
/* Loads the card keys of h->vault's key store (tsw_vault_key_add) into a
 * software HSM (opened once) as h->keys and sets h->cfg.hsm/card_keys to
 * them; before h_start, or before tsw_engine_reconfigure(h->e, &h->cfg)
 * (then the harness drops its reference on the set before). */
void h_card_keys(struct h *h);
/* Closes and reopens the state (h->scfg; the engine must be freed). */
void h_state_reopen(struct h *h);
/* A restart: frees the engine, reopens the state, zeroes the metrics
 * and starts a new engine (h_start). */
void h_restart(struct h *h);
/* Stalls the state's group commits (a state-stall child holds the state
 * environment's writer lock): nothing queued from now on becomes durable
 * until h_state_unstall(), which lets the writer go on (h_fini does it
 * too). Waits, with a deadline, until the lock is held. */
void h_state_stall(struct h *h);
void h_state_unstall(struct h *h);
/* Runs loop iterations, waiting on the state's eventfd (10 s deadline),
 * until the state ticket is durable. */
void h_wait_durable(struct h *h, uint64_t ticket);
/* The ticket of the state record (limited use, ATC) that a request in
 * flight was forwarded before it was durable, 0: none (white-box). */
uint64_t h_record_ticket(const struct h *h);
/* Waits (h_wait_durable) until no request in flight waits for its state
 * record: an approval of it then goes straight to the acquirer, as for a
 * request whose record was durable before it was forwarded. */
void h_wait_records(struct h *h);

/* Brings link up and answers its sign-on with rc. */
void h_sign_on(struct h *h, uint32_t link, const char *rc);

/* Request builder: fields given as (field, string) pairs, 0-terminated. */
size_t h_build(struct h *h, uint8_t *out, size_t cap, const char *mti, ...);
/* A standard 0100 for token t with acquirer STAN stan, plus extra fields
 * overriding the defaults (field, value; value NULL removes). */
size_t h_auth(struct h *h, uint8_t *out, size_t cap, enum h_token t, const char *stan, ...);
/* The same with fields that may hold any bytes (DE52, DE55): extra[0..n)
 * override the defaults (len 0 and data NULL removes). */
size_t h_auth_edits(struct h *h, uint8_t *out, size_t cap, enum h_token t, const char *stan,
		    const struct tsw_iso_edit *extra, size_t n);
/* Frames and sends a body to the acquirer connection; returns the engine's
 * result. */
int h_send(struct h *h, const uint8_t *body, size_t len);
int h_send_raw(struct h *h, const uint8_t *bytes, size_t len);
/* Collects and decodes what the engine wrote to an endpoint. */
void h_collect(struct h *h, uint8_t kind, uint32_t slot, struct h_msgs *out);
/* h_collect of the acquirer connection that fails when the PAN of any
 * test token is in the output (ASCII or packed BCD). */
void h_collect_acq_clean(struct h *h, struct h_msgs *out);
/* Keeps only the messages of m with that MTI (in order); returns how many. */
unsigned h_keep_mti(struct h_msgs *m, const char *mti);
/* Builds the issuer's answer to request m (DE39 rc) and feeds it. extra:
 * (field, value) pairs, 0-terminated. */
int h_issuer_answer(struct h *h, uint32_t link, const struct tsw_iso_msg *req, const char *rc, ...);
/* Field f of m as a NUL-terminated string (static buffer per call slot). */
const char *h_field(const struct tsw_iso_msg *m, unsigned f);
bool h_contains(const uint8_t *hay, size_t n, const char *needle);
/* digits in hay as ASCII or as packed BCD at either nibble alignment
 * (whatever pads them: F, 0, the D of track 2). */
bool h_contains_pan(const uint8_t *hay, size_t n, const char *digits);
/* Advances the clock by ms and ticks. */
void h_advance(struct h *h, uint64_t ms);
/* Collects the acquirer connection's output like h_collect; when nothing
 * is there yet, waits (real time, 10 s deadline, on an eventfd the
 * state's writer wakes) until the engine's last reversal is durable,
 * runs one loop iteration and collects again. Fails when an answer is
 * found while that reversal is not yet durable: an answer that leaves a
 * reversal behind goes out only after its commit. */
void h_collect_after_commit(struct h *h, struct h_msgs *out);
/* CLOCK_MONOTONIC in ms (real time, for test deadlines). */
int64_t h_real_ms(void);
/* One step of a wait for the state's writer: fails past deadline_ms
 * (h_real_ms) with what, else waits up to 10 ms for a commit and runs one
 * loop iteration (parked and held requests go on). */
void h_wait_step(struct h *h, int64_t deadline_ms, const char *what);

#endif
