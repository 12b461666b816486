/* Setup shared by the engine micro-benchmarks (see bench_common.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "testvault.h"
#include "tsw/error.h"

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bench_die(const char *what, int r)
{
	fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, tsw_strerror(r));
	exit(1);
}

int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

size_t bench_frame(const struct tsw_iso_profile *p, const struct tsw_iso_msg *msg,
		   const struct tsw_iso_edit *ed, size_t n_ed, uint8_t *out, size_t cap,
		   const char *what)
{
	int n = tsw_iso_encode(p, msg, ed, n_ed, out + 2, cap - 2);

	if (n < 0)
		bench_die(what, n);
	out[0] = (uint8_t)(n >> 8);
	out[1] = (uint8_t)n;
	return (size_t)n + 2;
}

size_t bench_drain(struct tsw_engine *e, uint8_t kind, uint32_t slot, uint8_t *copy)
{
	struct tsw_endpoint ep = {.kind = kind, .slot = slot};
	const uint8_t *data;
	size_t len;

	tsw_engine_out(e, ep, &data, &len);
	if (copy)
		memcpy(copy, data, len);
	tsw_engine_sent(e, ep, len);
	return len;
}

void bench_vault_create(struct bench_vault *bv, const char *dir_template, unsigned n_tokens,
			const struct tsw_token *tmpl)
{
	struct tsw_vault_import_stats st;
	int r;

	if (snprintf(bv->dir, sizeof(bv->dir), "%s", dir_template) >= (int)sizeof(bv->dir) - 16)
		bench_die("temp dir template too long", -EINVAL);
	if (!mkdtemp(bv->dir))
		bench_die("mkdtemp", -1);
	r = testvault_create(bv->dir, n_tokens, tmpl, NULL, NULL, NULL, &bv->v, &st);
	if (r < 0 || st.imported != n_tokens)
		bench_die("vault", r);
}

int bench_vault_destroy(struct bench_vault *bv)
{
	char cmd[BENCH_DIR_MAX + 16];

	tsw_vault_close(bv->v);
	bv->v = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", bv->dir);
	return system(cmd) == 0 ? 0 : -1;
}

void bench_config_init(struct tsw_engine_config *cfg, const struct tsw_iso_profile *prof)
{
	tsw_engine_config_init(cfg);
	cfg->acq_profile = cfg->iss_profile = prof;
	cfg->settings.max_conns = 4;
	cfg->settings.max_inflight_per_conn = 256;
	cfg->settings.out_buf_bytes = 256 * 1024;
	cfg->settings.n_issuers = 1;
	cfg->settings.n_hosts = 1; /* hosts[0]: issuer 0 */
}
