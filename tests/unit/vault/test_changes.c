/* Replication of vault changes (tsw/vault.h, docs/cluster.md): a write
 * transaction's write set, sealed, applied to a copy of the vault. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testvault.h"
#include "tsw/error.h"
#include "tsw/vault.h"

#define N_TOKENS 20
#define CHANGES_MAX 8
#define CHANGE_BYTES_MAX 65536

struct captured {
	unsigned n;
	size_t len[CHANGES_MAX];
	uint8_t bytes[CHANGES_MAX][CHANGE_BYTES_MAX];
	uint64_t prev_seq[CHANGES_MAX];
	int refuse; /* the hook's answer when nonzero */
};

static char dir[64];

static int capture(void *ctx, const struct tsw_vault_change *c, uint64_t *ret_seq)
{
	struct captured *cap = ctx;

	if (cap->refuse)
		return cap->refuse;
	cr_assert_lt(cap->n, CHANGES_MAX);
	cr_assert_leq(c->len, CHANGE_BYTES_MAX);
	cr_assert_eq(strlen(c->id), 24);
	memcpy(cap->bytes[cap->n], c->sealed, c->len);
	cap->len[cap->n] = c->len;
	cap->prev_seq[cap->n] = c->prev_seq;
	cap->n++;
	*ret_seq = cap->n;
	return 0;
}

static struct tsw_vault *open_copy(const char *name)
{
	char vault[128], key[128];
	struct tsw_vault *v;

	snprintf(vault, sizeof(vault), "%s/%s/vault", dir, name);
	snprintf(key, sizeof(key), "%s/%s/key", dir, name);
	cr_assert_eq(tsw_vault_open(vault, key, 0, &v), 0);
	return v;
}

static void digest(struct tsw_vault *v, uint8_t out[TSW_VAULT_DIGEST_BYTES], uint64_t *seq)
{
	cr_assert_eq(tsw_vault_digest(v, out, seq), 0);
}

static void token(unsigned i, char out[17])
{
	testvault_number(out, TESTVAULT_TOKEN_BIN, i);
}

static void fill(void *arg, unsigned i, struct tsw_vault_row *row)
{
	(void)arg;
	(void)i;
	row->token.status = TSW_TOKEN_ACTIVE;
	strcpy(row->token.token_expiry, "3012");
	strcpy(row->token.pan_expiry, "2911");
}

static void rejected(void *ctx, unsigned long line, int err, const char *reason)
{
	(void)ctx;
	cr_assert_fail("row %lu rejected: %s (%d)", line, reason, err);
}

/* Origin "a" and its copy "b", the same vault. */
static void setup(void)
{
	char a[96], cmd[256];
	struct tsw_vault *v;

	snprintf(dir, sizeof(dir), "/tmp/tsw-changes-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(a, sizeof(a), "%s/a", dir);
	cr_assert_eq(mkdir(a, 0700), 0);
	cr_assert_eq(testvault_create(a, N_TOKENS, NULL, fill, NULL, rejected, &v, NULL), 0);
	tsw_vault_close(v);
	snprintf(cmd, sizeof(cmd), "cp -a %s/a %s/b", dir, dir);
	cr_assert_eq(system(cmd), 0);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

static struct captured cap;

/* Three changes on a: a suspension, a device binding (a dupsort put), a
 * repersonalization; each captured once, nothing else. */
static struct tsw_vault *make_changes(void)
{
	struct tsw_vault *a = open_copy("a");
	char t1[17], t2[17];

	memset(&cap, 0, sizeof(cap));
	token(1, t1);
	token(2, t2);
	cr_assert_eq(tsw_vault_set_change_hook(a, capture, &cap, 1u << 20), 0);
	cr_assert_eq(tsw_vault_set_status(a, t1, 16, TSW_TOKEN_SUSPENDED, NULL), 0);
	cr_assert_eq(tsw_vault_bind_device(a, t2, 16, "device-1", 8), 0);
	cr_assert_eq(tsw_vault_repersonalize(a, t2, 16, TSW_VAULT_PSN_NEXT, NULL, NULL), 0);
	/* a verb that fails writes nothing and publishes nothing */
	cr_assert_eq(tsw_vault_bind_device(a, t2, 16, "device-1", 8), -TSW_E_EXISTS);
	cr_assert_eq(cap.n, 3);
	for (unsigned i = 0; i < cap.n; i++)
		cr_assert_eq(cap.prev_seq[i], i, "change %u expects the stream at %u", i, i);
	return a;
}

TestSuite(changes, .init = setup, .fini = teardown);

Test(changes, applied_in_order_the_copy_equals_the_origin)
{
	struct tsw_vault *a = make_changes(), *b = open_copy("b");
	uint8_t da[TSW_VAULT_DIGEST_BYTES], db[TSW_VAULT_DIGEST_BYTES];
	uint64_t sa, sb;

	digest(b, db, &sb);
	digest(a, da, &sa);
	cr_assert_neq(memcmp(da, db, sizeof(da)), 0, "the changes changed the origin");
	cr_assert_eq(sa, 3);
	cr_assert_eq(sb, 0);
	for (unsigned i = 0; i < cap.n; i++)
		cr_assert_eq(tsw_vault_change_apply(b, cap.bytes[i], cap.len[i], i + 1), 0);
	digest(b, db, &sb);
	cr_assert_eq(memcmp(da, db, sizeof(da)), 0, "copy differs from the origin");
	cr_assert_eq(sb, 3);
	tsw_vault_close(a);
	tsw_vault_close(b);
}

Test(changes, redelivered_or_older_sequences_are_skipped)
{
	struct tsw_vault *a = make_changes(), *b = open_copy("b");
	uint8_t before[TSW_VAULT_DIGEST_BYTES], after[TSW_VAULT_DIGEST_BYTES];
	uint64_t seq;

	cr_assert_eq(tsw_vault_change_apply(b, cap.bytes[0], cap.len[0], 1), 0);
	cr_assert_eq(tsw_vault_change_apply(b, cap.bytes[1], cap.len[1], 2), 0);
	digest(b, before, &seq);
	cr_assert_eq(tsw_vault_change_apply(b, cap.bytes[1], cap.len[1], 2), 1);
	cr_assert_eq(tsw_vault_change_apply(b, cap.bytes[0], cap.len[0], 1), 1);
	/* the origin's own change came back with its sequence: skipped */
	cr_assert_eq(tsw_vault_change_apply(a, cap.bytes[2], cap.len[2], 3), 1);
	digest(b, after, &seq);
	cr_assert_eq(memcmp(before, after, sizeof(before)), 0);
	cr_assert_eq(seq, 2);
	cr_assert_eq(tsw_vault_change_apply(b, cap.bytes[0], cap.len[0], 0), -EINVAL);
	tsw_vault_close(a);
	tsw_vault_close(b);
}

Test(changes, every_flipped_byte_is_refused_and_nothing_written)
{
	struct tsw_vault *a = make_changes(), *b = open_copy("b");
	uint8_t before[TSW_VAULT_DIGEST_BYTES], after[TSW_VAULT_DIGEST_BYTES];
	uint64_t seq;

	digest(b, before, &seq);
	for (unsigned c = 0; c < cap.n; c++) {
		for (size_t i = 0; i < cap.len[c]; i++) {
			cap.bytes[c][i] ^= 0x01;
			cr_assert_eq(tsw_vault_change_apply(b, cap.bytes[c], cap.len[c], c + 1),
				     -TSW_E_INTEGRITY, "change %u byte %zu flipped", c, i);
			cap.bytes[c][i] ^= 0x01;
		}
	}
	digest(b, after, &seq);
	cr_assert_eq(memcmp(before, after, sizeof(before)), 0);
	cr_assert_eq(seq, 0);
	tsw_vault_close(a);
	tsw_vault_close(b);
}

Test(changes, every_truncation_is_refused)
{
	struct tsw_vault *a = make_changes(), *b = open_copy("b");
	uint64_t seq;

	for (size_t n = 0; n < cap.len[0]; n++)
		cr_assert_eq(tsw_vault_change_apply(b, cap.bytes[0], n, 1), -TSW_E_INTEGRITY,
			     "%zu of %zu bytes", n, cap.len[0]);
	cr_assert_eq(tsw_vault_change_seq(b, &seq), 0);
	cr_assert_eq(seq, 0);
	tsw_vault_close(a);
	tsw_vault_close(b);
}

/* The sealed change names no token: neither its digits nor its LMDB key
 * (the token as a little-endian u64) appear in it. */
Test(changes, sealed_change_holds_no_token_in_clear)
{
	struct tsw_vault *a = make_changes();
	char t1[17];
	uint64_t key;

	token(1, t1);
	key = strtoull(t1, NULL, 10);
	cr_assert_null(memmem(cap.bytes[0], cap.len[0], t1, 16));
	cr_assert_null(memmem(cap.bytes[0], cap.len[0], &key, sizeof(key)));
	cr_assert_null(memmem(cap.bytes[0], cap.len[0], "tokens", 6));
	tsw_vault_close(a);
}

Test(changes, refused_publish_aborts_the_local_write)
{
	struct tsw_vault *a = open_copy("a");
	uint8_t before[TSW_VAULT_DIGEST_BYTES], after[TSW_VAULT_DIGEST_BYTES];
	struct tsw_token t;
	struct tsw_vault_reader *r;
	char t1[17];
	uint64_t seq;

	token(1, t1);
	memset(&cap, 0, sizeof(cap));
	cap.refuse = -ETIMEDOUT;
	digest(a, before, &seq);
	cr_assert_eq(tsw_vault_set_change_hook(a, capture, &cap, 1u << 20), 0);
	cr_assert_eq(tsw_vault_set_status(a, t1, 16, TSW_TOKEN_SUSPENDED, NULL), -ETIMEDOUT);
	/* too large for the message: refused before the hook */
	cap.refuse = 0;
	cr_assert_eq(tsw_vault_set_change_hook(a, capture, &cap, 64), 0);
	cr_assert_eq(tsw_vault_set_status(a, t1, 16, TSW_TOKEN_SUSPENDED, NULL), -EMSGSIZE);
	cr_assert_eq(cap.n, 0);
	digest(a, after, &seq);
	cr_assert_eq(memcmp(before, after, sizeof(before)), 0);
	cr_assert_eq(tsw_vault_reader_open(a, &r), 0);
	cr_assert_eq(tsw_vault_reader_renew(r), 0);
	cr_assert_eq(tsw_vault_lookup(r, t1, 16, &t), 0);
	cr_assert_eq(t.status, TSW_TOKEN_ACTIVE);
	tsw_vault_reader_close(r);
	tsw_vault_close(a);
}

Test(changes, a_burst_applies_in_one_transaction_or_not_at_all)
{
	struct tsw_vault *a = make_changes(), *b = open_copy("b");
	uint8_t da[TSW_VAULT_DIGEST_BYTES], db[TSW_VAULT_DIGEST_BYTES];
	struct tsw_vault_sealed c[3];
	size_t applied = 99;
	uint64_t seq;

	for (unsigned i = 0; i < 3; i++)
		c[i] = (struct tsw_vault_sealed){
		    .bytes = cap.bytes[i], .len = cap.len[i], .seq = i + 1};
	/* out of order: refused before anything is read */
	c[1].seq = 1;
	cr_assert_eq(tsw_vault_changes_apply(b, c, 3, &applied), -EINVAL);
	c[1].seq = 2;
	/* the last one tampered: none of the three lands */
	cap.bytes[2][cap.len[2] - 1] ^= 0x80;
	cr_assert_eq(tsw_vault_changes_apply(b, c, 3, &applied), -TSW_E_INTEGRITY);
	cr_assert_eq(applied, 99, "untouched on failure");
	cr_assert_eq(tsw_vault_change_seq(b, &seq), 0);
	cr_assert_eq(seq, 0);
	cap.bytes[2][cap.len[2] - 1] ^= 0x80;
	/* the first one applied already: skipped, the other two applied */
	cr_assert_eq(tsw_vault_change_apply(b, cap.bytes[0], cap.len[0], 1), 0);
	cr_assert_eq(tsw_vault_changes_apply(b, c, 3, &applied), 0);
	cr_assert_eq(applied, 2);
	digest(a, da, NULL);
	digest(b, db, &seq);
	cr_assert_eq(seq, 3);
	cr_assert_eq(memcmp(da, db, sizeof(da)), 0);
	cr_assert_eq(tsw_vault_changes_apply(b, c, 3, &applied), 0);
	cr_assert_eq(applied, 0);
	tsw_vault_close(a);
	tsw_vault_close(b);
}
