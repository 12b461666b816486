/* Setup shared by the engine micro-benchmarks (see bench_common.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
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

static char luhn_digit(const char *d, size_t n)
{
	unsigned sum = 0, i;

	for (i = 0; i < n; i++) {
		unsigned v = (unsigned)(d[n - 1 - i] - '0');

		if (i % 2 == 0) {
			v *= 2;
			if (v > 9)
				v -= 9;
		}
		sum += v;
	}
	return (char)('0' + (10 - sum % 10) % 10);
}

void bench_number(char out[17], const char *prefix, unsigned i)
{
	snprintf(out, 17, "%s%0*u", prefix, (int)(15 - strlen(prefix)), i);
	out[15] = luhn_digit(out, 15);
	out[16] = 0;
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
	char vdir[BENCH_DIR_MAX + 8], key[BENCH_DIR_MAX + 8];
	struct tsw_vault_import_stats st;
	struct tsw_vault_batch *b;
	unsigned i;
	int r;

	if (snprintf(bv->dir, sizeof(bv->dir), "%s", dir_template) >= (int)sizeof(bv->dir) - 16)
		bench_die("temp dir template too long", -EINVAL);
	if (!mkdtemp(bv->dir))
		bench_die("mkdtemp", -1);
	snprintf(vdir, sizeof(vdir), "%s/vault", bv->dir);
	snprintf(key, sizeof(key), "%s/key", bv->dir);
	r = tsw_vault_open(vdir, key, TSW_VAULT_CREATE, &bv->v);
	if (r < 0)
		bench_die("vault open", r);
	tsw_vault_add_token_bin(bv->v, "4000", 4);
	r = tsw_vault_batch_begin(bv->v, 0, NULL, NULL, &b);
	if (r < 0)
		bench_die("batch", r);
	for (i = 0; i < n_tokens; i++) {
		struct tsw_vault_row row;

		memset(&row, 0, sizeof(row));
		row.token = *tmpl;
		bench_number(row.token.token, "4000", i + 1);
		row.token.token_len = 16;
		bench_number(row.pan, "512345", i + 1);
		row.pan_len = 16;
		tsw_vault_batch_add(b, &row, i + 1);
	}
	r = tsw_vault_batch_finish(b, &st);
	if (r < 0 || st.imported != n_tokens)
		bench_die("import", r);
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
