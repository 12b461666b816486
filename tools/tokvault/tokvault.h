/* tokvault internals shared by its verbs. */
#ifndef TOKVAULT_H
#define TOKVAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "tsw/vault.h"

/* What `tokvault demo` makes. */
struct demo_opts {
	unsigned long count;  /* tokens */
	const char *out_path; /* the token list */
	const char *bin;      /* token BIN range; NULL: the vault's first, else 489537 */
	unsigned cvn_pct;     /* 0..100: tokens that require an ARQC */
	uint8_t cvn;	      /* 10, 16, 18, 20; 0: the four in turn */
	bool keys;	      /* add the demo keys (also when cvn_pct is 0) */
	uint8_t zpk_alg;      /* enum tsw_vault_key_alg of the zone PIN keys */
};

/* demo: a synthetic vault and the bench client's token list (and, with
 * cvn_pct or keys, the demo's card cryptography keys). Returns 0 or
 * EXIT_FAILURE after saying why on stderr. */
int demo_run(struct tsw_vault *v, const struct demo_opts *opts);

/* What tokvault_background set: the CPU and I/O classes read back. */
struct background {
	const char *sched; /* "idle" (SCHED_IDLE) or "nice19" */
	const char *io;	   /* "idle" (IOPRIO_CLASS_IDLE) or "unchanged" */
};

/* Puts the calling thread, and the threads it starts afterwards, in
 * SCHED_IDLE (nice 19 where that is refused) and the idle I/O class
 * (left as it was where refused). Returns 0 or -errno (neither CPU
 * setting took). */
int tokvault_background(struct background *ret);

#endif
