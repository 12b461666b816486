/* DE48 subelements: 2-digit tag, 2-digit length, value. */
#include <string.h>

#include "tsw/error.h"
#include "tsw/iso8583.h"

#define DE48_HDR_LEN 4
#define DE48_TAG_MAX 99
#define DE48_VAL_MAX 99

static int two_digits(const uint8_t *p, unsigned *ret)
{
	if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
		return -TSW_E_BAD_TLV;
	*ret = (unsigned)(p[0] - '0') * 10 + (unsigned)(p[1] - '0');
	return 0;
}

int tsw_de48_next(struct tsw_de48_iter *it, unsigned *ret_tag, const uint8_t **ret_val,
		  size_t *ret_len)
{
	unsigned tag, len;
	size_t left;

	if (it->off >= it->len)
		return 0;
	left = it->len - it->off;
	if (left < DE48_HDR_LEN)
		return -TSW_E_BAD_TLV;
	if (two_digits(it->p + it->off, &tag) < 0 || two_digits(it->p + it->off + 2, &len) < 0)
		return -TSW_E_BAD_TLV;
	if (len > left - DE48_HDR_LEN)
		return -TSW_E_BAD_TLV;
	*ret_tag = tag;
	*ret_val = it->p + it->off + DE48_HDR_LEN;
	*ret_len = len;
	it->off += DE48_HDR_LEN + len;
	return 1;
}

int tsw_de48_find(const uint8_t *p, size_t len, unsigned tag, const uint8_t **ret_val,
		  size_t *ret_len)
{
	struct tsw_de48_iter it = {.p = p, .len = len, .off = 0};
	const uint8_t *v;
	size_t vlen;
	unsigned t;
	int r;

	while ((r = tsw_de48_next(&it, &t, &v, &vlen)) == 1) {
		if (t == tag) {
			*ret_val = v;
			*ret_len = vlen;
			return 1;
		}
	}
	return r;
}

int tsw_de48_put(uint8_t *out, size_t cap, size_t *off, unsigned tag, const uint8_t *val,
		 size_t len)
{
	size_t at = *off;

	if (tag > DE48_TAG_MAX || len > DE48_VAL_MAX)
		return -TSW_E_BAD_INPUT;
	if (at > cap || cap - at < DE48_HDR_LEN + len)
		return -TSW_E_NO_SPACE;
	out[at] = (uint8_t)('0' + tag / 10);
	out[at + 1] = (uint8_t)('0' + tag % 10);
	out[at + 2] = (uint8_t)('0' + len / 10);
	out[at + 3] = (uint8_t)('0' + len % 10);
	if (len)
		memcpy(out + at + DE48_HDR_LEN, val, len);
	*off = at + DE48_HDR_LEN + len;
	return 0;
}

int tsw_de48_copy_except(const uint8_t *p, size_t len, unsigned lo, unsigned hi, uint8_t *out,
			 size_t cap, size_t *off)
{
	struct tsw_de48_iter it = {.p = p, .len = len, .off = 0};
	size_t at = *off;
	const uint8_t *v;
	size_t vlen;
	unsigned t;
	int r;

	while ((r = tsw_de48_next(&it, &t, &v, &vlen)) == 1) {
		if (t >= lo && t <= hi)
			continue;
		r = tsw_de48_put(out, cap, &at, t, v, vlen);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	*off = at;
	return 0;
}
