/* Setup shared by the engine micro-benchmarks (bench_engine, bench_saf):
 * a vault of numbered tokens in a temp directory, the engine config they
 * share, draining the engine's output. Every helper exits the program
 * with a message on failure: a benchmark has nothing to recover. */
#ifndef TSW_BENCH_ENGINE_COMMON_H
#define TSW_BENCH_ENGINE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "tsw/engine.h"
#include "tsw/token.h"
#include "tsw/vault.h"

#define BENCH_DIR_MAX 64u

/* A vault in a fresh temp directory. */
struct bench_vault {
	char dir[BENCH_DIR_MAX];
	struct tsw_vault *v;
};

/* CLOCK_MONOTONIC in ns. */
uint64_t bench_now_ns(void);
/* Prints "<program>: what: tsw_strerror(r)" and exits 1. */
void bench_die(const char *what, int r);
/* qsort comparator of uint64_t, ascending. */
int bench_cmp_u64(const void *a, const void *b);
/* Encodes edits (over msg, or NULL: a new message; tsw_iso_encode) into
 * out behind its 2-byte length header (the default profile's bin2), as
 * the benchmarks' fake peers frame; returns the bytes written, header
 * included. Dies with what on failure. */
size_t bench_frame(const struct tsw_iso_profile *p, const struct tsw_iso_msg *msg,
		   const struct tsw_iso_edit *ed, size_t n_ed, uint8_t *out, size_t cap,
		   const char *what);
/* Takes everything the engine has for an endpoint (copied to copy when
 * not NULL) and marks it sent; returns its length. */
size_t bench_drain(struct tsw_engine *e, uint8_t kind, uint32_t slot, uint8_t *copy);
/* Creates dir_template (mkdtemp; at most BENCH_DIR_MAX - 16 bytes) with
 * a vault holding tokens 4000... 1..n_tokens for PANs 512345... 1..n
 * (tests/lib/testvault.h; testvault_number makes the numbers): the other
 * token fields come from tmpl. */
void bench_vault_create(struct bench_vault *bv, const char *dir_template, unsigned n_tokens,
			const struct tsw_token *tmpl);
/* Closes the vault and removes the directory; 0 or -1 when rm fails. */
int bench_vault_destroy(struct bench_vault *bv);
/* The config both benchmarks start from: one issuer, 4 connections of
 * 256 requests in flight and 256 KiB of output each. */
void bench_config_init(struct tsw_engine_config *cfg, const struct tsw_iso_profile *prof);

#endif
