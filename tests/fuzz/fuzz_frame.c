/* Fuzz target: frame reader + decoder + re-encode + DE48/TLV/masking.
 *
 * Input: byte 0 picks the profile (0 default, 1 ascii4, 2 hexbitmap),
 * byte 1 the chunk size the stream is fed in, the rest is the stream
 * (hexbitmap: one unframed message). Checked invariants, each a trap:
 * - the frames read from the whole stream equal those read in chunks;
 * - whatever decodes re-encodes, and the re-encoding decodes to the same
 *   MTI and fields;
 * - an edited message (token swap) encodes or fails with a listed error.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/error.h"
#include "tsw/iso8583.h"

#define FUZZ_PROFILES 3
#define FUZZ_FMT_CAP 512
#define FUZZ_ENCODE_SLACK 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tsw_iso_profile profiles[FUZZ_PROFILES];
static bool loaded;

static void load(void)
{
	static const char *const names[FUZZ_PROFILES] = {"default", "ascii4", "hexbitmap"};

	for (int i = 0; i < FUZZ_PROFILES; i++)
		if (tsw_iso_profile_load_named(NULL, names[i], &profiles[i]) < 0)
			abort();
	loaded = true;
}

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

static void walk_subfields(const struct tsw_iso_msg *m)
{
	const uint8_t *v;
	size_t vlen;

	if (tsw_iso_has(m, 48)) {
		struct tsw_de48_iter it = {.p = tsw_iso_ptr(m, 48), .len = m->f[48].len};
		unsigned tag;

		while (tsw_de48_next(&it, &tag, &v, &vlen) == 1)
			check(tag <= 99 && v + vlen <= it.p + it.len);
	}
	if (tsw_iso_has(m, 55)) {
		struct tsw_tlv_iter it = {.p = tsw_iso_ptr(m, 55), .len = m->f[55].len};
		uint32_t tag;

		while (tsw_tlv_next(&it, &tag, &v, &vlen) == 1)
			check(v + vlen <= it.p + it.len);
	}
}

static void same_fields(const struct tsw_iso_msg *a, const struct tsw_iso_msg *b)
{
	check(memcmp(a->mti, b->mti, 4) == 0);
	for (unsigned f = 2; f < TSW_ISO_FIELDS; f++) {
		check(tsw_iso_has(a, f) == tsw_iso_has(b, f));
		if (!tsw_iso_has(a, f))
			continue;
		check(a->f[f].len == b->f[f].len);
		check(memcmp(tsw_iso_ptr(a, f), tsw_iso_ptr(b, f), a->f[f].len) == 0);
	}
}

static void one_message(const struct tsw_iso_profile *p, const uint8_t *body, size_t len)
{
	size_t cap = p->max_frame + FUZZ_ENCODE_SLACK;
	uint8_t *out = malloc(cap);
	struct tsw_iso_msg m, d;
	char fmt[FUZZ_FMT_CAP];
	const struct tsw_iso_edit swap[] = {
	    {2, 16, (const uint8_t *)"4111111111111111"},
	    {35, 0, NULL},
	    {39, 2, (const uint8_t *)"00"},
	};
	int r;

	check(out != NULL);
	r = tsw_iso_decode(p, body, len, &m);
	if (r < 0) {
		check(r <= -TSW_E_BASE && r > -TSW_E_MAX);
		check(m.err_field >= 0 && m.err_field <= 128);
		goto out;
	}
	r = tsw_iso_encode(p, &m, NULL, 0, out, cap);
	check(r > 0 && (size_t)r <= len);
	check(tsw_iso_decode(p, out, (size_t)r, &d) == 0);
	same_fields(&m, &d);
	/* an all-zero secondary bitmap is the only thing re-encoding drops */
	check((size_t)r == len || (tsw_iso_has(&m, 1) && m.bitmap[1] == 0));
	if ((size_t)r == len)
		check(memcmp(out, body, len) == 0 || p->bitmap == TSW_ISO_BITMAP_HEX);

	r = tsw_iso_encode(p, &m, swap, sizeof(swap) / sizeof(swap[0]), out, cap);
	if (r > 0)
		check(tsw_iso_decode(p, out, (size_t)r, &d) == 0);
	else
		check(r == -TSW_E_FRAME_TOO_BIG || r == -TSW_E_NO_SPACE);

	walk_subfields(&m);
	check(tsw_iso_format_masked(p, &m, fmt, sizeof(fmt)) < sizeof(fmt));
out:
	free(out);
}

/* Reads every frame of in[0..len) fed in chunks of chunk bytes; records
 * the frames' lengths and bytes. Returns the framer's final status. */
static int read_frames(const struct tsw_iso_profile *p, const uint8_t *in, size_t len, size_t chunk,
		       size_t *lens, size_t *n_frames, uint8_t *bytes, size_t *n_bytes, bool decode)
{
	struct tsw_iso_framer fr;
	size_t at = 0;
	int r = 0;

	*n_frames = 0;
	*n_bytes = 0;
	check(tsw_iso_framer_init(&fr, p) == 0);
	while (at < len) {
		size_t n = len - at < chunk ? len - at : chunk;
		size_t off = 0;
		const uint8_t *f;
		size_t flen;

		while ((r = tsw_iso_framer_next(&fr, in + at, n, &off, &f, &flen)) == 1) {
			check(flen <= p->max_frame);
			check(*n_bytes + flen <= len);
			lens[(*n_frames)++] = flen;
			memcpy(bytes + *n_bytes, f, flen);
			*n_bytes += flen;
			if (decode)
				one_message(p, f, flen);
		}
		if (r < 0)
			break;
		check(off == n);
		at += n;
	}
	tsw_iso_framer_free(&fr);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct tsw_iso_profile *p;
	size_t chunk, len, na, nb, ba, bb;
	size_t *la, *lb;
	uint8_t *xa, *xb;
	const uint8_t *in;
	int ra, rb;

	if (!loaded)
		load();
	if (size < 2)
		return 0;
	p = &profiles[data[0] % FUZZ_PROFILES];
	chunk = (size_t)data[1] + 1;
	in = data + 2;
	len = size - 2;

	if (p->header == TSW_ISO_HDR_NONE) {
		/* exact-size copy so any overread trips ASan */
		uint8_t *copy = malloc(len ? len : 1);

		check(copy != NULL);
		memcpy(copy, in, len);
		one_message(p, copy, len);
		free(copy);
		return 0;
	}
	la = malloc((len + 1) * sizeof(*la));
	lb = malloc((len + 1) * sizeof(*lb));
	xa = malloc(len + 1);
	xb = malloc(len + 1);
	check(la && lb && xa && xb);
	ra = read_frames(p, in, len, len ? len : 1, la, &na, xa, &ba, true);
	rb = read_frames(p, in, len, chunk, lb, &nb, xb, &bb, false);
	check(ra == rb && na == nb && ba == bb);
	check(memcmp(la, lb, na * sizeof(*la)) == 0 && memcmp(xa, xb, ba) == 0);
	free(la);
	free(lb);
	free(xa);
	free(xb);
	return 0;
}
