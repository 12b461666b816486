/* ISO 8583 decode into views and encode from a view plus edits. */
#include <string.h>

#include "charclass.h"
#include "tsw/error.h"
#include "tsw/iso8583.h"

#define MTI_LEN 4
#define BITMAP_BIN_LEN 8
#define BITMAP_HEX_LEN 16
#define BIT_SECONDARY (1ull << 63) /* field 1 in bitmap[0] */

static inline uint64_t field_bit(unsigned f)
{
	return 1ull << (63 - (f - 1) % 64);
}

static inline int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int check_rare(const struct tsw_iso_field_spec *fs, const uint8_t *v, size_t n)
{
	switch ((enum tsw_iso_type)fs->type) {
	case TSW_ISO_AN:
		return cc_all(v, n, CC_AN) ? 0 : -TSW_E_BAD_CHARSET;
	case TSW_ISO_Z:
		return cc_all(v, n, CC_Z) ? 0 : -TSW_E_BAD_CHARSET;
	case TSW_ISO_XN:
		if (n < 1 || (v[0] != 'C' && v[0] != 'D'))
			return -TSW_E_BAD_CHARSET;
		return cc_digits(v + 1, n - 1) ? 0 : -TSW_E_NOT_NUMERIC;
	case TSW_ISO_B:
		if (!fs->hex)
			return 0;
		return cc_all(v, n, CC_HEX) ? 0 : -TSW_E_BAD_CHARSET;
	case TSW_ISO_N:
	case TSW_ISO_ANS:
	case TSW_ISO_TYPE_MAX:
		break;
	}
	return -TSW_E_BAD_CHARSET;
}

/* Checks a value against its field type: 0 or -TSW_E_NOT_NUMERIC /
 * -TSW_E_BAD_CHARSET. n and ans, most of a message, take the word-at-a-time
 * paths without an indirect jump. */
static inline int check_value(const struct tsw_iso_field_spec *fs, const uint8_t *v, size_t n)
{
	if (fs->type == TSW_ISO_N)
		return cc_digits(v, n) ? 0 : -TSW_E_NOT_NUMERIC;
	if (fs->type == TSW_ISO_ANS)
		return cc_printable(v, n) ? 0 : -TSW_E_BAD_CHARSET;
	return check_rare(fs, v, n);
}

static int read_bitmap(const struct tsw_iso_profile *p, const uint8_t *buf, size_t len, size_t *pos,
		       uint64_t *ret)
{
	uint64_t v = 0;
	size_t at = *pos;

	if (p->bitmap == TSW_ISO_BITMAP_HEX) {
		if (len - at < BITMAP_HEX_LEN)
			return -TSW_E_TRUNCATED;
		for (unsigned i = 0; i < BITMAP_HEX_LEN; i++) {
			int h = hexval(buf[at + i]);

			if (h < 0)
				return -TSW_E_BAD_BITMAP;
			v = v << 4 | (unsigned)h;
		}
		*pos = at + BITMAP_HEX_LEN;
	} else {
		if (len - at < BITMAP_BIN_LEN)
			return -TSW_E_TRUNCATED;
		for (unsigned i = 0; i < BITMAP_BIN_LEN; i++)
			v = v << 8 | buf[at + i];
		*pos = at + BITMAP_BIN_LEN;
	}
	*ret = v;
	return 0;
}

int tsw_iso_decode(const struct tsw_iso_profile *p, const uint8_t *buf, size_t len,
		   struct tsw_iso_msg *ret_msg)
{
	struct tsw_iso_msg *m = ret_msg;
	size_t pos = MTI_LEN;
	uint64_t bm[2] = {0, 0};
	int r;

	m->buf = buf;
	m->len = (uint32_t)len;
	m->err_field = 0;
	if (len > p->max_frame)
		return -TSW_E_FRAME_TOO_BIG;
	if (len < MTI_LEN || !cc_all(buf, MTI_LEN, CC_DIGIT))
		return -TSW_E_NO_MTI;
	memcpy(m->mti, buf, MTI_LEN);
	r = read_bitmap(p, buf, len, &pos, &bm[0]);
	if (r < 0)
		return r;
	if (bm[0] & BIT_SECONDARY) {
		m->err_field = 1;
		r = read_bitmap(p, buf, len, &pos, &bm[1]);
		if (r < 0)
			return r;
	}
	m->bitmap[0] = bm[0];
	m->bitmap[1] = bm[1];
	bm[0] &= ~BIT_SECONDARY;

	for (unsigned w = 0; w < 2; w++) {
		uint64_t bits = bm[w];

		while (bits) {
			unsigned lz = (unsigned)__builtin_clzll(bits);
			unsigned f = w * 64 + lz + 1;
			const struct tsw_iso_field_spec *fs = &p->fields[f];
			size_t vlen;

			bits &= ~(1ull << (63 - lz));
			m->err_field = (int)f;
			if (!fs->defined)
				return -TSW_E_UNDEFINED_FIELD;
			if (fs->prefix) {
				if (len - pos < fs->prefix)
					return -TSW_E_TRUNCATED;
				if (!cc_all(buf + pos, fs->prefix, CC_DIGIT))
					return -TSW_E_NOT_NUMERIC;
				vlen = (size_t)(buf[pos] - '0') * 10 + (size_t)(buf[pos + 1] - '0');
				if (fs->prefix == 3)
					vlen = vlen * 10 + (size_t)(buf[pos + 2] - '0');
				if (vlen > fs->max_len)
					return -TSW_E_FIELD_TOO_LONG;
				if (fs->hex)
					vlen *= 2;
				pos += fs->prefix;
			} else {
				vlen = fs->wire_max;
			}
			if (len - pos < vlen)
				return -TSW_E_TRUNCATED;
			r = check_value(fs, buf + pos, vlen);
			if (r < 0)
				return r;
			m->f[f].off = (uint16_t)pos;
			m->f[f].len = (uint16_t)vlen;
			pos += vlen;
		}
	}
	if (pos != len) {
		m->err_field = 0;
		return -TSW_E_TRAILING;
	}
	m->err_field = 0;
	return 0;
}

/* Validates one edit that sets a value. */
static int check_edit(const struct tsw_iso_field_spec *fs, const struct tsw_iso_edit *e)
{
	if (fs->len_kind == TSW_ISO_FIXED) {
		if (e->len > fs->wire_max)
			return -TSW_E_FIELD_TOO_LONG;
		if (e->len < fs->wire_max)
			return -TSW_E_BAD_INPUT;
	} else {
		if (e->len > fs->wire_max)
			return -TSW_E_FIELD_TOO_LONG;
		if (fs->hex && (e->len & 1))
			return -TSW_E_BAD_INPUT;
	}
	return check_value(fs, e->data, e->len);
}

static void write_bitmap(const struct tsw_iso_profile *p, uint64_t v, uint8_t *out)
{
	static const char hexdig[] = "0123456789ABCDEF";

	if (p->bitmap == TSW_ISO_BITMAP_HEX) {
		for (int i = BITMAP_HEX_LEN - 1; i >= 0; i--, v >>= 4)
			out[i] = (uint8_t)hexdig[v & 0xf];
	} else {
		for (int i = BITMAP_BIN_LEN - 1; i >= 0; i--, v >>= 8)
			out[i] = (uint8_t)(v & 0xff);
	}
}

static size_t bitmap_size(const struct tsw_iso_profile *p)
{
	return p->bitmap == TSW_ISO_BITMAP_HEX ? BITMAP_HEX_LEN : BITMAP_BIN_LEN;
}

/* Where field f starts in msg's buffer (its prefix), or, when msg lacks
 * f, where the first field of msg after f starts (end when none): the end
 * of the unchanged stretch before f. */
static int source_start(const struct tsw_iso_profile *p, const struct tsw_iso_msg *msg, unsigned f,
			size_t src_pos, size_t end, size_t *ret_start)
{
	uint64_t b0 = msg->bitmap[0] & ~BIT_SECONDARY;
	uint64_t b1 = msg->bitmap[0] & BIT_SECONDARY ? msg->bitmap[1] : 0;
	uint64_t at_or_after = field_bit(f) | (field_bit(f) - 1);
	unsigned g = 0;
	size_t start;

	if (f <= 64 && (b0 & at_or_after))
		g = (unsigned)__builtin_clzll(b0 & at_or_after) + 1;
	else if (f > 64 && (b1 & at_or_after))
		g = 64 + (unsigned)__builtin_clzll(b1 & at_or_after) + 1;
	else if (f <= 64 && b1)
		g = 64 + (unsigned)__builtin_clzll(b1) + 1;
	if (!g) {
		*ret_start = end;
		return 0;
	}
	if (!p->fields[g].defined)
		return -TSW_E_UNDEFINED_FIELD; /* msg decoded with another profile */
	start = (size_t)msg->f[g].off - p->fields[g].prefix;
	if (msg->f[g].off < p->fields[g].prefix || start < src_pos || start > end)
		return -TSW_E_BAD_INPUT;
	*ret_start = start;
	return 0;
}

/* Writes the MTI and the bitmaps of the result: msg's fields but those
 * edited, and those the edits set. *ret_pos: where its fields start. */
static int write_head(const struct tsw_iso_profile *p, const struct tsw_iso_msg *msg,
		      const uint8_t *mti, const uint64_t edited[2], const uint64_t set[2],
		      uint8_t *out, size_t cap, size_t *ret_pos)
{
	uint64_t res[2] = {0, 0};
	size_t bms = bitmap_size(p), pos;

	if (msg) {
		res[0] = msg->bitmap[0] & ~BIT_SECONDARY;
		res[1] = msg->bitmap[0] & BIT_SECONDARY ? msg->bitmap[1] : 0;
	}
	res[0] = (res[0] & ~edited[0]) | set[0];
	res[1] = (res[1] & ~edited[1]) | set[1];
	if (res[1])
		res[0] |= BIT_SECONDARY;
	pos = MTI_LEN + bms * (res[1] ? 2 : 1);
	if (cap < pos)
		return -TSW_E_NO_SPACE;
	memcpy(out, mti, MTI_LEN);
	write_bitmap(p, res[0], out + MTI_LEN);
	if (res[1])
		write_bitmap(p, res[1], out + MTI_LEN + bms);
	*ret_pos = pos;
	return 0;
}

/* Writes the value the edits give field f (spec fs) to out at pos: its
 * length prefix, then the value; *pos moves past it. */
static int write_edited(const struct tsw_iso_field_spec *fs, unsigned f,
			const struct tsw_iso_edit *edits, size_t n_edits, uint8_t *out, size_t cap,
			size_t *pos)
{
	const struct tsw_iso_edit *e = NULL;
	size_t at = *pos, cnt;

	for (size_t i = 0; i < n_edits; i++) {
		if (edits[i].field == f) {
			e = &edits[i];
			break;
		}
	}
	if (!e)
		return -TSW_E_BAD_INPUT; /* unreachable: set[] comes from edits */
	if (cap - at < (size_t)fs->prefix + e->len)
		return -TSW_E_NO_SPACE;
	cnt = fs->hex ? e->len / 2u : e->len;
	if (fs->prefix == 3) {
		out[at++] = (uint8_t)('0' + cnt / 100);
		cnt %= 100;
	}
	if (fs->prefix) {
		out[at++] = (uint8_t)('0' + cnt / 10);
		out[at++] = (uint8_t)('0' + cnt % 10);
	}
	memcpy(out + at, e->data, e->len);
	*pos = at + e->len;
	return 0;
}

int tsw_iso_encode(const struct tsw_iso_profile *p, const struct tsw_iso_msg *msg,
		   const struct tsw_iso_edit *edits, size_t n_edits, uint8_t *out, size_t cap)
{
	uint64_t edited[2] = {0, 0}, set[2] = {0, 0};
	const uint8_t *mti = msg ? (const uint8_t *)msg->mti : NULL;
	size_t src_pos = 0, src_end = 0, pos, bms;
	int r;

	for (size_t i = 0; i < n_edits; i++) {
		const struct tsw_iso_edit *e = &edits[i];
		unsigned f = e->field;

		if (f == 0) {
			if (!e->data || e->len != MTI_LEN || !cc_all(e->data, MTI_LEN, CC_DIGIT))
				return -TSW_E_NO_MTI;
			mti = e->data;
			continue;
		}
		if (f == 1 || f >= TSW_ISO_FIELDS || !p->fields[f].defined)
			return -TSW_E_UNDEFINED_FIELD;
		if (edited[(f - 1) / 64] & field_bit(f))
			return -TSW_E_BAD_INPUT;
		edited[(f - 1) / 64] |= field_bit(f);
		if (!e->data)
			continue;
		r = check_edit(&p->fields[f], e);
		if (r < 0)
			return r;
		set[(f - 1) / 64] |= field_bit(f);
	}
	if (!mti)
		return -TSW_E_NO_MTI;
	r = write_head(p, msg, mti, edited, set, out, cap, &pos);
	if (r < 0)
		return r;
	bms = bitmap_size(p);

	/* Unchanged fields are contiguous in msg's buffer between edited
	 * ones: copy each stretch in one go and visit only the edited fields. */
	if (msg) {
		src_pos = MTI_LEN + bms * (msg->bitmap[0] & BIT_SECONDARY ? 2 : 1);
		src_end = msg->len;
	}
	for (unsigned w = 0; w < 2; w++) {
		uint64_t bits = edited[w];

		while (bits) {
			unsigned lz = (unsigned)__builtin_clzll(bits);
			unsigned f = w * 64 + lz + 1;
			uint64_t bit = 1ull << (63 - lz);

			bits &= ~bit;
			if (msg) {
				size_t start;

				r = source_start(p, msg, f, src_pos, src_end, &start);
				if (r < 0)
					return r;
				if (cap - pos < start - src_pos)
					return -TSW_E_NO_SPACE;
				memcpy(out + pos, msg->buf + src_pos, start - src_pos);
				pos += start - src_pos;
				src_pos = tsw_iso_has(msg, f) ? (size_t)msg->f[f].off + msg->f[f].len
							      : start;
			}
			if (!(set[w] & bit))
				continue; /* removed */
			r = write_edited(&p->fields[f], f, edits, n_edits, out, cap, &pos);
			if (r < 0)
				return r;
		}
	}
	if (msg) {
		if (cap - pos < src_end - src_pos)
			return -TSW_E_NO_SPACE;
		memcpy(out + pos, msg->buf + src_pos, src_end - src_pos);
		pos += src_end - src_pos;
	}
	if (pos > p->max_frame)
		return -TSW_E_FRAME_TOO_BIG;
	return (int)pos;
}

size_t tsw_iso_header_size(const struct tsw_iso_profile *p)
{
	switch ((enum tsw_iso_header)p->header) {
	case TSW_ISO_HDR_BIN2:
		return 2;
	case TSW_ISO_HDR_ASCII4:
		return 4;
	case TSW_ISO_HDR_NONE:
	case TSW_ISO_HDR_MAX:
		break;
	}
	return 0;
}

uint32_t tsw_iso_header_max(const struct tsw_iso_profile *p)
{
	switch ((enum tsw_iso_header)p->header) {
	case TSW_ISO_HDR_BIN2:
		return TSW_ISO_BIN2_BODY_MAX;
	case TSW_ISO_HDR_ASCII4:
		return TSW_ISO_ASCII4_BODY_MAX;
	case TSW_ISO_HDR_NONE:
	case TSW_ISO_HDR_MAX:
		break;
	}
	return TSW_ISO_BIN2_BODY_MAX; /* no header: the views' 16-bit offsets */
}

int tsw_iso_header_write(const struct tsw_iso_profile *p, size_t body_len, uint8_t *out)
{
	/* a length the header cannot say would be written modulo its range,
	 * and the peer would read the rest of the body as frames of their
	 * own: whatever max_frame says, refuse it */
	if (body_len > p->max_frame || body_len > tsw_iso_header_max(p))
		return -TSW_E_FRAME_TOO_BIG;
	switch ((enum tsw_iso_header)p->header) {
	case TSW_ISO_HDR_BIN2:
		out[0] = (uint8_t)(body_len >> 8);
		out[1] = (uint8_t)body_len;
		break;
	case TSW_ISO_HDR_ASCII4:
		for (int i = 3; i >= 0; i--, body_len /= 10)
			out[i] = (uint8_t)('0' + body_len % 10);
		break;
	case TSW_ISO_HDR_NONE:
	case TSW_ISO_HDR_MAX:
		break;
	}
	return 0;
}
