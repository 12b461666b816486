/* BER-TLV reader for DE55 (EMV chip data). */
#include "tsw/error.h"
#include "tsw/iso8583.h"

#define TLV_TAG_BYTES_MAX 4
#define TLV_LEN_BYTES_MAX 3

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
