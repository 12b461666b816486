/* tokbench's load loop: N connections over one io_uring, closed loop
 * (depth D per connection) or open loop (a fixed rate, latency from the
 * intended send time), answers matched by DE11 per connection. */
#ifndef TSW_BENCH_BENCH_H
#define TSW_BENCH_BENCH_H

#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "card.h"
#include "hist.h"
#include "request.h"
#include "tokens.h"

#define BENCH_MAX_CONNECTIONS 4096
#define BENCH_MAX_DEPTH 4096
#define BENCH_OPEN_INFLIGHT_DEFAULT 4096 /* per connection, open loop */
#define BENCH_TIMEOUT_MS_DEFAULT 5000
#define BENCH_RC_SLOTS (36 * 36) /* two alphanumerics */
#define BENCH_LIVE_INTERVAL_NS 1000000000ull
#define BENCH_SCAN_MIN_NS 1000000ull /* timeout scans at most every 1 ms */
#define BENCH_STAN_SPACE 1000000u    /* DE11 has 6 digits */
#define BENCH_PICK_TRIES 16	     /* random picks before a send waits for a free card */

struct bench_config {
	struct sockaddr_in target;
	uint32_t connections;
	uint32_t depth;	       /* closed loop: in flight per connection */
	double rate;	       /* open loop when > 0: requests per second, all connections */
	uint32_t max_inflight; /* open loop: in flight per connection */
	double duration_s, warmup_s;
	uint64_t timeout_ms;
	double decline_pct;
	uint8_t expect; /* enum bench_expect_mode */
	uint64_t seed;
	bool live; /* a line per second on stderr */
	/* NULL: no card cryptography. Else rows that need an ARQC send DE55
	 * (one request per such token in flight, ATCs ascending) and, with a
	 * PIN, every request DE52; bench_run() updates the cards' ATCs. */
	struct bench_cards *cards;
};

struct bench_result {
	double elapsed_s;      /* measured window */
	uint64_t sent;	       /* requests sent in the window */
	uint64_t count;	       /* answers matched in the window */
	uint64_t warmup_count; /* answers to requests sent during the warm-up */
	uint64_t errors;       /* requests lost to a broken connection, bad answers */
	uint64_t timeouts;
	uint64_t wrong;		/* DE39 not the expected one, or a PAN leak */
	uint64_t pan_leaks;	/* answer DE2 differs from the token sent, or DE35 present */
	uint64_t unmatched;	/* answers with an unknown DE11 (late after a timeout) */
	uint64_t backlog_max;	/* open loop: most requests waiting for a free slot */
	uint64_t conn_failures; /* connections closed under load */
	uint64_t rc[BENCH_RC_SLOTS];
	uint64_t kind_sent[BENCH_REQ_KIND_MAX];
	uint64_t cryptograms;	/* requests sent with a DE55 */
	uint64_t pin_blocks;	/* requests sent with a DE52 */
	uint64_t tag91;		/* answers to them with a tag 91 that checks */
	uint64_t tag91_missing; /* approvals through the switch without one (wrong) */
	uint64_t tag91_bad;	/* a tag 91 that is not the ARPC (wrong) */
	uint64_t card_waits;	/* sends put off: the tokens picked were all in flight */
	struct hist lat; /* nanoseconds */
};

/* Maps a DE39 to its rc[] slot and back. */
unsigned bench_rc_index(const char rc[2]);
void bench_rc_name(unsigned idx, char ret_rc[2]);

/* Connects, loads nothing: runs the load over toks with profile p until the
 * duration ends (or *stop), then waits up to timeout_ms for answers still
 * in flight. Returns 0, or -errno (connect, ring), with *ret filled as far
 * as it got. */
int bench_run(const struct bench_config *cfg, const struct tsw_iso_profile *p,
	      const struct bench_tokens *toks, volatile sig_atomic_t *stop,
	      struct bench_result *ret);

#endif
