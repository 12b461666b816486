/* Request fields for the decision, read from a decoded ISO 8583 message.
 * Every value stays a view into the message buffer. */
#include <string.h>

#include "tsw/authz.h"
#include "tsw/error.h"
#include "tsw/iso8583.h"

enum {
	DE_PAN = 2,
	DE_PROC_CODE = 3,
	DE_AMOUNT = 4,
	DE_EXPIRY = 14,
	DE_MCC = 18,
	DE_ENTRY_MODE = 22,
	DE_ACQUIRER = 32,
	DE_MERCHANT = 42,
	DE_ADDITIONAL = 48,
	DE_CURRENCY = 49,
	DE_CHIP = 55,
};

enum {
	AMOUNT_DIGITS = 12,
	EXPIRY_DIGITS = 4,
	MCC_DIGITS = 4,
	CURRENCY_DIGITS = 3,
	ENTRY_MODE_MIN_DIGITS = 2,
};

enum tsw_authz_class tsw_authz_class_of(const char mti[4])
{
	if (mti[0] != '0' || (mti[3] != '0' && mti[3] != '1'))
		return TSW_AUTHZ_CLASS_OTHER;
	switch (mti[1]) {
	case '1':
	case '2':
		if (mti[2] == '0')
			return TSW_AUTHZ_CLASS_AUTH;
		if (mti[2] == '2')
			return TSW_AUTHZ_CLASS_ADVICE;
		return TSW_AUTHZ_CLASS_OTHER;
	case '4':
		if (mti[2] == '0' || mti[2] == '2')
			return TSW_AUTHZ_CLASS_REVERSAL;
		return TSW_AUTHZ_CLASS_OTHER;
	case '8':
		if (mti[2] == '0')
			return TSW_AUTHZ_CLASS_NETWORK;
		return TSW_AUTHZ_CLASS_OTHER;
	default:
		return TSW_AUTHZ_CLASS_OTHER;
	}
}

static struct tsw_authz_str field(const struct tsw_iso_msg *m, unsigned f)
{
	struct tsw_authz_str s = {NULL, 0};

	if (!tsw_iso_has(m, f))
		return s;
	if ((uint32_t)m->f[f].off + m->f[f].len > m->len)
		return s;
	s.ptr = (const char *)tsw_iso_ptr(m, f);
	s.len = m->f[f].len;
	return s;
}

static bool all_digits(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned)(unsigned char)p[i] - '0' > 9)
			return false;
	return true;
}

/* An optional fixed-length digit field: absent is fine, present must be
 * exactly n digits. */
static int digits_field(struct tsw_authz_str s, size_t n)
{
	if (s.ptr == NULL)
		return 0;
	if (s.len != n)
		return -TSW_E_BAD_INPUT;
	return all_digits(s.ptr, s.len) ? 0 : -TSW_E_NOT_NUMERIC;
}

static int parse_amount(struct tsw_authz_str s, uint64_t *ret_amount)
{
	uint64_t v = 0;

	if (s.ptr == NULL)
		return -TSW_E_BAD_INPUT;
	if (s.len == 0 || s.len > AMOUNT_DIGITS)
		return -TSW_E_BAD_INPUT;
	for (size_t i = 0; i < s.len; i++) {
		unsigned d = (unsigned)(unsigned char)s.ptr[i] - '0';

		if (d > 9)
			return -TSW_E_NOT_NUMERIC;
		v = v * 10 + d;
	}
	*ret_amount = v;
	return 0;
}

/* DE22: the first two digits are the PAN entry mode. */
static int parse_entry_mode(struct tsw_authz_str s, uint8_t *ret_mode)
{
	unsigned code;
	uint8_t mode;

	if (s.ptr == NULL || s.len < ENTRY_MODE_MIN_DIGITS)
		return -TSW_E_BAD_INPUT;
	if (!all_digits(s.ptr, s.len))
		return -TSW_E_NOT_NUMERIC;
	code = (unsigned)(s.ptr[0] - '0') * 10 + (unsigned)(s.ptr[1] - '0');
	switch (code) {
	case 1:
		mode = TSW_POS_MANUAL;
		break;
	case 2:
	case 90:
		mode = TSW_POS_MAGSTRIPE;
		break;
	case 5:
		mode = TSW_POS_CHIP;
		break;
	case 7:
	case 91:
		mode = TSW_POS_CONTACTLESS;
		break;
	case 10:
		mode = TSW_POS_COF;
		break;
	case 81:
		mode = TSW_POS_ECOMMERCE;
		break;
	default:
		return -TSW_E_BAD_INPUT;
	}
	*ret_mode = mode;
	return 0;
}

/* DE48 subelements (2-digit tag, 2-digit length, value), walked with the
 * codec's tsw_de48_next(): picks tags 10, 11 and 12 in one pass. A later
 * repeat of a tag wins. */
static int parse_de48(struct tsw_authz_str s, struct tsw_authz_str *ret_device,
		      struct tsw_authz_str *ret_cryptogram, struct tsw_authz_str *ret_trid)
{
	struct tsw_authz_str dev = {NULL, 0}, cry = {NULL, 0}, trid = {NULL, 0};
	struct tsw_de48_iter it = {.p = (const uint8_t *)s.ptr, .len = s.ptr ? s.len : 0};
	const uint8_t *val;
	size_t vlen;
	unsigned tag;
	int r;

	while ((r = tsw_de48_next(&it, &tag, &val, &vlen)) == 1) {
		struct tsw_authz_str v = {(const char *)val, (uint16_t)vlen};

		switch (tag) {
		case TSW_DE48_DEVICE_ID:
			dev = v;
			break;
		case TSW_DE48_CRYPTOGRAM:
			cry = v;
			break;
		case TSW_DE48_TRID:
			if (v.len != TSW_TRID_LEN || !all_digits(v.ptr, v.len))
				return -TSW_E_BAD_TLV;
			trid = v;
			break;
		default:
			break;
		}
	}
	if (r < 0)
		return r;
	*ret_device = dev;
	*ret_cryptogram = cry;
	*ret_trid = trid;
	return 0;
}

static struct tsw_authz_str trim_right(struct tsw_authz_str s)
{
	while (s.ptr != NULL && s.len > 0 && s.ptr[s.len - 1] == ' ')
		s.len--;
	return s;
}

int tsw_authz_parse(const struct tsw_iso_msg *m, struct tsw_authz_req *ret_req)
{
	struct tsw_authz_req req;
	bool strict;
	int r;

	memset(&req, 0, sizeof(req));
	req.msg_class = (uint8_t)tsw_authz_class_of(m->mti);
	if (req.msg_class == TSW_AUTHZ_CLASS_OTHER)
		return -TSW_E_BAD_INPUT;
	if (req.msg_class == TSW_AUTHZ_CLASS_NETWORK)
		goto done;
	strict = req.msg_class == TSW_AUTHZ_CLASS_AUTH;

	req.token = field(m, DE_PAN);
	if (req.token.ptr == NULL || req.token.len < TSW_TOKEN_MIN_DIGITS ||
	    req.token.len > TSW_TOKEN_MAX_DIGITS)
		return -TSW_E_BAD_INPUT;
	if (!all_digits(req.token.ptr, req.token.len))
		return -TSW_E_NOT_NUMERIC;

	r = parse_amount(field(m, DE_AMOUNT), &req.amount);
	if (r < 0)
		return r;
	req.has_amount = true;

	req.proc_code = field(m, DE_PROC_CODE);
	req.expiry = field(m, DE_EXPIRY);
	req.mcc = field(m, DE_MCC);
	req.currency = field(m, DE_CURRENCY);
	req.acquirer_id = field(m, DE_ACQUIRER);
	req.merchant_id = trim_right(field(m, DE_MERCHANT));
	req.chip_data = field(m, DE_CHIP);
	req.has_chip_data = req.chip_data.ptr != NULL;

	r = parse_entry_mode(field(m, DE_ENTRY_MODE), &req.pos_mode);
	if (r == 0)
		req.has_pos_mode = true;
	else if (strict)
		return r;

	r = parse_de48(field(m, DE_ADDITIONAL), &req.device_id, &req.cryptogram, &req.trid);
	if (r < 0 && strict)
		return r;

	if (strict) {
		r = digits_field(req.expiry, EXPIRY_DIGITS);
		if (r == 0)
			r = digits_field(req.mcc, MCC_DIGITS);
		if (r == 0)
			r = digits_field(req.currency, CURRENCY_DIGITS);
		if (r < 0)
			return r;
	} else {
		/* forwarded as sent; only what the engine may copy is kept */
		if (digits_field(req.expiry, EXPIRY_DIGITS) < 0)
			req.expiry = (struct tsw_authz_str){NULL, 0};
		if (digits_field(req.mcc, MCC_DIGITS) < 0)
			req.mcc = (struct tsw_authz_str){NULL, 0};
		if (digits_field(req.currency, CURRENCY_DIGITS) < 0)
			req.currency = (struct tsw_authz_str){NULL, 0};
	}

done:
	*ret_req = req;
	return 0;
}
