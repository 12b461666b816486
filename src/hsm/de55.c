/* DE55 (BER-TLV chip data) -> the inputs of an ARQC. */
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "tsw/error.h"
#include "tsw/iso8583.h"

/* Visa 9F10 (formats 0, 1, 3): length 06, DKI, CVN, CVR (4 bytes, its
 * own length byte first), then optional issuer discretionary data. */
#define VISA_IAD_LEN_BYTE 0x06
#define VISA_IAD_MIN 7u
#define VISA_CVN_OFF 2u
#define VISA_CVR_OFF 3u
#define VISA_CVR_LEN 4u
/* Mastercard 9F10 (M/Chip): DKI, CVN, CVR (6 bytes), DAC/counters, ... */
#define MC_IAD_MIN 8u
#define MC_CVN_OFF 1u
#define MC_CVR_OFF 2u
#define MC_CVR_LEN 6u

#define F(field) offsetof(struct tsw_hsm_arqc_input, field)
/* The tags: where each goes and the length EMV gives it. */
static const struct {
	uint32_t tag;
	size_t off, len;
	bool optional;
} tags[] = {
    {0x9F26, F(arqc), 8, false},     {0x9F27, F(cid), 1, false},
    {0x9F02, F(amount), 6, false},   {0x9F03, F(amount_other), 6, false},
    {0x9F1A, F(country), 2, false},  {0x95, F(tvr), 5, false},
    {0x5F2A, F(currency), 2, false}, {0x9A, F(date), 3, false},
    {0x9C, F(type), 1, false},	     {0x9F37, F(un), 4, false},
    {0x82, F(aip), 2, false},	     {0x9F36, F(atc), 2, false},
    {0x5F34, F(psn), 1, true},	     {0x9F10, F(iad), 0, false},
};
#undef F
#define N_TAGS (sizeof(tags) / sizeof(tags[0]))
#define PSN_INDEX (N_TAGS - 2)
#define IAD_INDEX (N_TAGS - 1)

static int fail(int err, uint32_t tag, uint32_t *ret_tag)
{
	if (ret_tag)
		*ret_tag = tag;
	return err;
}

/* The CVR from 9F10 by the scheme's layout of cvn. */
static int cvr_from_iad(struct tsw_hsm_arqc_input *in, unsigned cvn)
{
	switch (cvn) {
	case TSW_HSM_CVN_VISA_10:
	case TSW_HSM_CVN_VISA_18:
		if (in->iad_len < VISA_IAD_MIN || in->iad[0] != VISA_IAD_LEN_BYTE ||
		    in->iad[VISA_CVN_OFF] != cvn)
			return -TSW_E_BAD_INPUT;
		memcpy(in->cvr, in->iad + VISA_CVR_OFF, VISA_CVR_LEN);
		in->cvr_len = VISA_CVR_LEN;
		return 0;
	case TSW_HSM_CVN_MC_16:
	case TSW_HSM_CVN_MC_20:
		if (in->iad_len < MC_IAD_MIN || in->iad[MC_CVN_OFF] != cvn)
			return -TSW_E_BAD_INPUT;
		memcpy(in->cvr, in->iad + MC_CVR_OFF, MC_CVR_LEN);
		in->cvr_len = MC_CVR_LEN;
		return 0;
	default:
		return -TSW_E_BAD_INPUT;
	}
}

int tsw_hsm_de55_parse(const uint8_t *de55, size_t len, unsigned cvn,
		       struct tsw_hsm_arqc_input *ret_in, uint32_t *ret_tag)
{
	struct tsw_tlv_iter it = {.p = de55, .len = len, .off = 0};
	const uint8_t *val[N_TAGS] = {0};
	size_t vlen[N_TAGS] = {0};
	struct tsw_hsm_arqc_input in = {0};
	const uint8_t *v;
	uint32_t tag;
	size_t n;
	int r;

	if (cvn != TSW_HSM_CVN_VISA_10 && cvn != TSW_HSM_CVN_VISA_18 && cvn != TSW_HSM_CVN_MC_16 &&
	    cvn != TSW_HSM_CVN_MC_20)
		return fail(-TSW_E_BAD_INPUT, 0, ret_tag);
	while ((r = tsw_tlv_next(&it, &tag, &v, &n)) == 1) {
		for (size_t i = 0; i < N_TAGS; i++) {
			if (tags[i].tag != tag)
				continue;
			/* the switch would verify one value, the issuer might
			 * read the other */
			if (val[i])
				return fail(-TSW_E_BAD_INPUT, tag, ret_tag);
			val[i] = v;
			vlen[i] = n;
			break;
		}
	}
	if (r < 0)
		return fail(r, 0, ret_tag);
	for (size_t i = 0; i < N_TAGS; i++) {
		if (!val[i]) {
			if (tags[i].optional)
				continue;
			return fail(-TSW_E_NOT_FOUND, tags[i].tag, ret_tag);
		}
		if (i == IAD_INDEX) {
			if (vlen[i] == 0 || vlen[i] > TSW_HSM_IAD_MAX)
				return fail(-TSW_E_BAD_INPUT, tags[i].tag, ret_tag);
			memcpy(in.iad, val[i], vlen[i]);
			in.iad_len = (uint8_t)vlen[i];
			continue;
		}
		if (vlen[i] != tags[i].len)
			return fail(-TSW_E_BAD_INPUT, tags[i].tag, ret_tag);
		memcpy((uint8_t *)&in + tags[i].off, val[i], tags[i].len);
	}
	in.has_psn = val[PSN_INDEX] != NULL;
	if (in.has_psn && ((in.psn >> 4) > 9 || (in.psn & 0x0f) > 9))
		return fail(-TSW_E_BAD_INPUT, 0x5F34, ret_tag);
	in.cvn = (uint8_t)cvn;
	if (cvr_from_iad(&in, cvn) < 0)
		return fail(-TSW_E_BAD_INPUT, 0x9F10, ret_tag);
	*ret_in = in;
	return 0;
}

/* A short-form BER-TLV object (tags here are 1 or 2 bytes, values below
 * 128 bytes) at buf + *off. */
static bool put_tlv(uint8_t *buf, size_t cap, size_t *off, uint32_t tag, const uint8_t *v, size_t n)
{
	size_t tl = tag > 0xff ? 2 : 1;

	if (n > 127 || *off + tl + 1 + n > cap)
		return false;
	if (tl == 2)
		buf[(*off)++] = (uint8_t)(tag >> 8);
	buf[(*off)++] = (uint8_t)tag;
	buf[(*off)++] = (uint8_t)n;
	memcpy(buf + *off, v, n);
	*off += n;
	return true;
}

int tsw_hsm_de55_build(const struct tsw_hsm_arqc_input *in, uint8_t *out, size_t cap)
{
	size_t off = 0;

	if (in->iad_len == 0 || in->iad_len > TSW_HSM_IAD_MAX)
		return -TSW_E_BAD_INPUT;
	for (size_t i = 0; i < N_TAGS; i++) {
		const uint8_t *v = (const uint8_t *)in + tags[i].off;
		size_t n = tags[i].len;

		if (i == PSN_INDEX && !in->has_psn)
			continue;
		if (i == IAD_INDEX)
			n = in->iad_len;
		if (!put_tlv(out, cap, &off, tags[i].tag, v, n))
			return -TSW_E_NO_SPACE;
	}
	return (int)off;
}
