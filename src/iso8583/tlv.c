/* BER-TLV reader for DE55 (EMV chip data), and a copy without the tags
 * that carry card data. */
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "tsw/error.h"
#include "tsw/iso8583.h"

#define TLV_TAG_BYTES_MAX 4
#define TLV_LEN_BYTES_MAX 3
#define TLV_CONSTRUCTED 0x20 /* bit 6 of a tag's first byte */

int tsw_tlv_next(struct tsw_tlv_iter *it, uint32_t *ret_tag, const uint8_t **ret_val,
		 size_t *ret_len)
{
	const uint8_t *p = it->p;
	size_t off = it->off, len = it->len, vlen;
	uint32_t tag;
	unsigned n;

	/* EMV allows 0x00 padding before, between and after objects */
	while (off < len && p[off] == 0x00)
		off++;
	if (off >= len) {
		it->off = len;
		return 0;
	}
	tag = p[off++];
	if ((tag & 0x1f) == 0x1f) {
		n = 1;
		do {
			if (off >= len || n == TLV_TAG_BYTES_MAX)
				return -TSW_E_BAD_TLV;
			tag = tag << 8 | p[off];
			n++;
		} while (p[off++] & 0x80);
	}
	if (off >= len)
		return -TSW_E_BAD_TLV;
	vlen = p[off++];
	if (vlen & 0x80) {
		n = vlen & 0x7f;
		if (n == 0 || n > TLV_LEN_BYTES_MAX || len - off < n)
			return -TSW_E_BAD_TLV;
		vlen = 0;
		while (n--)
			vlen = vlen << 8 | p[off++];
	}
	if (vlen > len - off)
		return -TSW_E_BAD_TLV;
	*ret_tag = tag;
	*ret_val = p + off;
	*ret_len = vlen;
	it->off = off + vlen;
	return 1;
}

int tsw_tlv_find(const uint8_t *p, size_t len, uint32_t tag, const uint8_t **ret_val,
		 size_t *ret_len)
{
	struct tsw_tlv_iter it = {.p = p, .len = len, .off = 0};
	const uint8_t *v;
	size_t vlen;
	uint32_t t;
	int r;

	while ((r = tsw_tlv_next(&it, &t, &v, &vlen)) == 1) {
		if (t == tag) {
			*ret_val = v;
			*ret_len = vlen;
			return 1;
		}
	}
	return r;
}

/* Bytes of a tag value's encoding: its first byte is never 0x00 (that
 * is padding), so the big-endian value has exactly as many bytes. */
static size_t tag_bytes(uint32_t tag)
{
	return tag > 0xffffff ? 4 : tag > 0xffff ? 3 : tag > 0xff ? 2 : 1;
}

static bool tag_listed(uint32_t tag, const uint32_t *tags, size_t n_tags)
{
	for (size_t i = 0; i < n_tags; i++)
		if (tags[i] == tag)
			return true;
	return false;
}

/* Writes tag and a definite length (shortest form) at out[*pos]. */
static int put_head(uint8_t *out, size_t cap, size_t *pos, uint32_t tag, size_t vlen)
{
	size_t tb = tag_bytes(tag), lb = 1;

	if (vlen >= 0x80) /* 0x81..0x83 and the length's bytes */
		lb = vlen <= 0xff ? 2 : vlen <= 0xffff ? 3 : 4;
	if (vlen > 0xffffff) /* more than TLV_LEN_BYTES_MAX length bytes */
		return -TSW_E_BAD_TLV;
	if (cap - *pos < tb + lb)
		return -TSW_E_NO_SPACE;
	for (size_t i = tb; i-- > 0;)
		out[(*pos)++] = (uint8_t)(tag >> (8 * i));
	if (lb == 1) {
		out[(*pos)++] = (uint8_t)vlen;
		return 0;
	}
	out[(*pos)++] = (uint8_t)(0x80 | (lb - 1));
	for (size_t i = lb - 1; i-- > 0;)
		out[(*pos)++] = (uint8_t)(vlen >> (8 * i));
	return 0;
}

static int copy_except(const uint8_t *p, size_t len, const uint32_t *tags, size_t n_tags,
		       uint8_t *out, size_t cap, size_t *pos, unsigned depth, unsigned *dropped)
{
	struct tsw_tlv_iter it = {.p = p, .len = len, .off = 0};
	const uint8_t *v;
	size_t vlen;
	uint32_t tag;
	int r;

	if (depth > TSW_TLV_DEPTH_MAX)
		return -TSW_E_BAD_TLV;
	while ((r = tsw_tlv_next(&it, &tag, &v, &vlen)) == 1) {
		size_t head = *pos, body, n;

		if (tag_listed(tag, tags, n_tags)) {
			(*dropped)++;
			continue;
		}
		if (!((tag >> (8 * (tag_bytes(tag) - 1))) & TLV_CONSTRUCTED)) {
			/* primitive: copied with its value as it is */
			r = put_head(out, cap, pos, tag, vlen);
			if (r < 0)
				return r;
			if (cap - *pos < vlen)
				return -TSW_E_NO_SPACE;
			memcpy(out + *pos, v, vlen);
			*pos += vlen;
			continue;
		}
		/* constructed: its contents first, after room for the
		 * longest head, then the head in front of them */
		body = head + tag_bytes(tag) + 1 + TLV_LEN_BYTES_MAX;
		if (body > cap)
			return -TSW_E_NO_SPACE;
		n = body;
		r = copy_except(v, vlen, tags, n_tags, out, cap, &n, depth + 1, dropped);
		if (r < 0)
			return r;
		n -= body;
		*pos = head;
		r = put_head(out, cap, pos, tag, n);
		if (r < 0)
			return r;
		memmove(out + *pos, out + body, n);
		*pos += n;
	}
	return r;
}

int tsw_tlv_copy_except(const uint8_t *p, size_t len, const uint32_t *tags, size_t n_tags,
			uint8_t *out, size_t cap, unsigned *ret_dropped)
{
	size_t pos = 0;
	unsigned dropped = 0;
	int r;

	r = copy_except(p, len, tags, n_tags, out, cap, &pos, 0, &dropped);
	if (r < 0)
		return r;
	if (pos > INT_MAX)
		return -TSW_E_NO_SPACE;
	*ret_dropped = dropped;
	return (int)pos;
}
