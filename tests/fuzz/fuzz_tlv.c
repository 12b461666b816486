/* Fuzz target: the DE55 BER-TLV reader (tsw_tlv_next, tsw_tlv_find).
 *
 * Input: the DE55 bytes. Checked invariants, each a trap:
 * - every object's value lies inside the input, after its tag and length,
 *   and the walk moves forward; it ends (0) or fails (-TSW_E_BAD_TLV);
 * - what was read re-encodes (minimal lengths) to bytes that read back to
 *   the same objects in the same order, and end where they end;
 * - tsw_tlv_find of each tag read gives the first object with that tag.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tsw/error.h"
#include "tsw/iso8583.h"

#define TLV_OBJECTS_MAX 4096 /* an object takes at least 2 bytes of input */

struct obj {
	uint32_t tag;
	const uint8_t *v;
	size_t len;
};

/* Reads every object of p[0..len) into objs; returns the count, the
 * walk's final result in *ret_r. */
static size_t walk(const uint8_t *p, size_t len, struct obj *objs, size_t max, int *ret_r)
{
	struct tsw_tlv_iter it = {.p = p, .len = len, .off = 0};
	size_t n = 0, last = 0;
	int r;

	while ((r = tsw_tlv_next(&it, &objs[n].tag, &objs[n].v, &objs[n].len)) == 1) {
		fuzz_check(objs[n].v >= p + last + 2 && objs[n].v + objs[n].len <= p + len);
		fuzz_check(it.off == (size_t)(objs[n].v - p) + objs[n].len && it.off > last);
		last = it.off;
		n++;
		fuzz_check(n < max);
	}
	fuzz_check(r == 0 || r == -TSW_E_BAD_TLV);
	if (r == 0)
		fuzz_check(it.off == len);
	*ret_r = r;
	return n;
}

static size_t put_tag(uint32_t tag, uint8_t *out)
{
	size_t n = 0;
	int shift = 24;

	while (shift > 0 && (tag >> shift) == 0)
		shift -= 8;
	for (; shift >= 0; shift -= 8)
		out[n++] = (uint8_t)(tag >> shift);
	return n;
}

static size_t put_len(size_t len, uint8_t *out)
{
	if (len < 0x80) {
		out[0] = (uint8_t)len;
		return 1;
	}
	if (len <= 0xff) {
		out[0] = 0x81;
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[0] = 0x82;
		out[1] = (uint8_t)(len >> 8);
		out[2] = (uint8_t)len;
		return 3;
	}
	out[0] = 0x83;
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
	return 4;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t max = size / 2 + 2, n, m, at = 0;
	struct obj *a = malloc(max * sizeof(*a)), *b = malloc(max * sizeof(*b));
	/* re-encoding adds at most 3 length bytes per object (tags keep theirs) */
	uint8_t *enc = malloc(size + 4 * max);
	int ra, rb;

	fuzz_check(a && b && enc);
	n = walk(data, size, a, max, &ra);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *v;
		size_t vlen;

		fuzz_check(tsw_tlv_find(data, size, a[i].tag, &v, &vlen) == 1);
		for (size_t j = 0; j < i; j++)
			if (a[j].tag == a[i].tag) {
				fuzz_check(v == a[j].v && vlen == a[j].len);
				goto found;
			}
		fuzz_check(v == a[i].v && vlen == a[i].len);
	found:
		at += put_tag(a[i].tag, enc + at);
		at += put_len(a[i].len, enc + at);
		memcpy(enc + at, a[i].v, a[i].len);
		at += a[i].len;
	}
	m = walk(enc, at, b, max, &rb);
	fuzz_check(rb == 0 && m == n);
	for (size_t i = 0; i < n; i++)
		fuzz_check(a[i].tag == b[i].tag && a[i].len == b[i].len &&
			   memcmp(a[i].v, b[i].v, a[i].len) == 0);
	free(a);
	free(b);
	free(enc);
	return 0;
}
