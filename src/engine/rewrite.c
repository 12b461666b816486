/* Field rewrites between the acquirer and the issuer leg: DE48 token data
 * (tags 30-36 out, never in from the acquirer), DE35 track 2 equivalent;
 * the fields a local answer echoes from its request, and the switch's own
 * DE7 (transmission time) and six-digit fields (DE11).
 */
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "rewrite.h"
#include "tsw/error.h"

const uint8_t tsw_engine_echo_fields[TSW_ENGINE_ECHO_FIELDS] = {2,  3,	4,  7,	11, 12,
								13, 37, 41, 42, 49};

static bool is_token_tag(unsigned tag)
{
	return tag >= TSW_DE48_TOKEN_FIRST && tag <= TSW_DE48_TOKEN_LAST;
}

int engine__de48_strip_token_tags(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap,
				  size_t *ret_len)
{
	struct tsw_de48_iter it = {.p = in, .len = in_len, .off = 0};
	size_t off = 0;
	unsigned tag;
	const uint8_t *val;
	size_t vlen;
	int r;

	while ((r = tsw_de48_next(&it, &tag, &val, &vlen)) == 1) {
		if (is_token_tag(tag))
			continue;
		r = tsw_de48_put(out, cap, &off, tag, val, vlen);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	*ret_len = off;
	return 0;
}

static int put_str(uint8_t *out, size_t cap, size_t *off, unsigned tag, const char *s)
{
	size_t n = strlen(s);

	if (!n)
		return 0;
	return tsw_de48_put(out, cap, off, tag, (const uint8_t *)s, n);
}

int engine__de48_for_issuer(const uint8_t *acq, size_t acq_len, const struct tsw_token *t,
			    uint8_t *out, size_t cap, size_t *ret_len)
{
	size_t off = 0;
	char level[3];
	int r;

	if (acq && acq_len) {
		r = engine__de48_strip_token_tags(acq, acq_len, out, cap, &off);
		/* a malformed acquirer DE48 (advices, reversals) is dropped:
		 * what cannot be parsed cannot be checked for tags 30-36 */
		if (r == -TSW_E_BAD_TLV)
			off = 0;
		else if (r < 0)
			return r;
	}
	r = tsw_de48_put(out, cap, &off, 30, (const uint8_t *)t->token, t->token_len);
	if (r == 0)
		r = put_str(out, cap, &off, 31, t->token_expiry);
	if (r == 0)
		r = put_str(out, cap, &off, 32, t->trid);
	if (r == 0) {
		level[0] = (char)('0' + t->assurance_level / 10 % 10);
		level[1] = (char)('0' + t->assurance_level % 10);
		level[2] = 0;
		r = put_str(out, cap, &off, 33, level);
	}
	if (r == 0)
		r = put_str(out, cap, &off, 34, t->token_ref);
	if (r == 0)
		r = put_str(out, cap, &off, 35, t->par);
	if (r == 0 && t->original_token[0])
		r = put_str(out, cap, &off, 36, t->original_token_ref);
	if (r < 0)
		return r;
	*ret_len = off;
	return 0;
}

int engine__de35_to_pan(const uint8_t *in, size_t in_len, const char *pan, size_t pan_len,
			const char *pan_expiry, uint8_t *out, size_t cap, size_t *ret_len)
{
	size_t sep = 0, n;

	while (sep < in_len && in[sep] != '=' && in[sep] != 'D')
		sep++;
	if (sep == in_len)
		return -TSW_E_BAD_INPUT;
	n = pan_len + (in_len - sep);
	if (n > cap)
		return -TSW_E_NO_SPACE;
	memcpy(out, pan, pan_len);
	memcpy(out + pan_len, in + sep, in_len - sep);
	/* the expiry (YYMM) follows the separator: the PAN's replaces the token's */
	if (in_len - sep > 4 && strlen(pan_expiry) == 4)
		memcpy(out + pan_len + 1, pan_expiry, 4);
	*ret_len = n;
	return 0;
}

void engine__fmt_de7(int64_t wall_s, char out[10])
{
	struct tm tm;
	time_t t = (time_t)wall_s;

	gmtime_r(&t, &tm);
	out[0] = (char)('0' + (tm.tm_mon + 1) / 10);
	out[1] = (char)('0' + (tm.tm_mon + 1) % 10);
	out[2] = (char)('0' + tm.tm_mday / 10);
	out[3] = (char)('0' + tm.tm_mday % 10);
	out[4] = (char)('0' + tm.tm_hour / 10);
	out[5] = (char)('0' + tm.tm_hour % 10);
	out[6] = (char)('0' + tm.tm_min / 10);
	out[7] = (char)('0' + tm.tm_min % 10);
	out[8] = (char)('0' + tm.tm_sec / 10);
	out[9] = (char)('0' + tm.tm_sec % 10);
}

void engine__fmt6(uint32_t v, char out[6])
{
	int i;

	for (i = 5; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
}
