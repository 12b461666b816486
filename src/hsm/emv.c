/* EMV application cryptograms over clear TDES2 keys: option A master key
 * derivation, session keys, the ISO/IEC 9797-1 retail MAC, ARQC and ARPC.
 * EMV 4.3 Book 2 Annex A1; Mastercard's CVN 16 session key from M/Chip. */
#include <errno.h>
#include <openssl/crypto.h>
#include <string.h>

#include "internal.h"
#include "tsw/error.h"

#define OPTION_A_DIGITS 16u
/* 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36: the data every CVN starts with */
#define MAC_COMMON_BYTES (6 + 6 + 2 + 5 + 2 + 3 + 1 + 4 + 2 + 2)
#define MAC_DATA_MAX (MAC_COMMON_BYTES + TSW_HSM_IAD_MAX + TDES_BLOCK)
#define ARPC_PROP_MAX 8u

/* DES ignores the low bit of each byte; set it for odd parity so the key
 * reads as a well-formed DES key to anyone who inspects it. */
static void odd_parity(uint8_t *k, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t b = k[i] & 0xfe;

		k[i] = b | !(__builtin_popcount(b) & 1);
	}
}

void hsm__emv_icc_mk(const struct tdes2_ks *imk, const char *pan, size_t pan_len, uint8_t psn,
		     uint8_t ret_mk[16])
{
	char digits[TSW_HSM_PAN_DIGITS_MAX + 2];
	uint8_t y[2 * TDES_BLOCK];
	size_t n = pan_len + 2, skip;

	/* Y: the rightmost 16 digits of PAN || PSN, zeros on the left when
	 * shorter, packed BCD; the key is TDES(Y) || TDES(Y xor FF..FF) */
	memcpy(digits, pan, pan_len);
	digits[pan_len] = (char)('0' + (psn >> 4));
	digits[pan_len + 1] = (char)('0' + (psn & 0x0f));
	memset(y, 0, TDES_BLOCK);
	skip = n > OPTION_A_DIGITS ? n - OPTION_A_DIGITS : 0;
	for (size_t i = skip; i < n; i++) {
		size_t pos = OPTION_A_DIGITS - (n - i); /* nibble index in Y */
		uint8_t d = (uint8_t)(digits[i] - '0');

		y[pos / 2] |= pos % 2 ? d : (uint8_t)(d << 4);
	}
	for (size_t i = 0; i < TDES_BLOCK; i++)
		y[TDES_BLOCK + i] = y[i] ^ 0xff;
	hsm__tdes2_ecb(imk, 1, y, sizeof(y), ret_mk);
	odd_parity(ret_mk, 16);
	OPENSSL_cleanse(digits, sizeof(digits));
}

int hsm__emv_session_key(const struct tdes2_ks *mk, const struct tsw_hsm_arqc_input *in,
			 uint8_t ret_sk[16])
{
	uint8_t r[2 * TDES_BLOCK] = {0};

	/* left half from ATC || F0 || 00 .., right half from ATC || 0F || 00 ..;
	 * Mastercard CVN 16 puts its UN in the last four bytes of both */
	memcpy(r, in->atc, 2);
	r[2] = 0xf0;
	memcpy(r + TDES_BLOCK, in->atc, 2);
	r[TDES_BLOCK + 2] = 0x0f;
	switch (in->cvn) {
	case TSW_HSM_CVN_MC_16:
		memcpy(r + 4, in->un, 4);
		memcpy(r + TDES_BLOCK + 4, in->un, 4);
		break;
	case TSW_HSM_CVN_VISA_18:
	case TSW_HSM_CVN_MC_20:
		break;
	default:
		return -TSW_E_BAD_INPUT;
	}
	hsm__tdes2_ecb(mk, 1, r, sizeof(r), ret_sk);
	odd_parity(ret_sk, 16);
	return 0;
}

void hsm__emv_retail_mac(const struct tdes2_ks *key, enum tsw_hsm_pad pad, const uint8_t *data,
			 size_t len, uint8_t ret_mac[8])
{
	uint8_t last[TDES_BLOCK] = {0};
	size_t padded, full;

	/* method 1 pads with zeros (empty data: one zero block), method 2
	 * always adds 0x80 and zeros; only the last block needs a copy */
	if (pad == TSW_HSM_PAD_1)
		padded = len == 0 ? TDES_BLOCK : (len + TDES_BLOCK - 1) / TDES_BLOCK * TDES_BLOCK;
	else
		padded = (len + TDES_BLOCK) / TDES_BLOCK * TDES_BLOCK;
	full = padded - TDES_BLOCK;
	if (len > full)
		memcpy(last, data + full, len - full);
	if (pad == TSW_HSM_PAD_2)
		last[len - full] = 0x80;
	hsm__tdes2_mac3(key, data, full, last, ret_mac);
	OPENSSL_cleanse(last, sizeof(last));
}

/* The MAC input of in's CVN into buf; returns its length and the padding. */
static size_t mac_data(const struct tsw_hsm_arqc_input *in, uint8_t *buf, enum tsw_hsm_pad *pad)
{
	size_t n = 0;

#define PUT(field)                                                                                 \
	do {                                                                                       \
		memcpy(buf + n, &(in->field), sizeof(in->field));                                  \
		n += sizeof(in->field);                                                            \
	} while (0)
	PUT(amount);
	PUT(amount_other);
	PUT(country);
	PUT(tvr);
	PUT(currency);
	PUT(date);
	PUT(type);
	PUT(un);
	PUT(aip);
	PUT(atc);
#undef PUT
	switch (in->cvn) {
	case TSW_HSM_CVN_VISA_18:
		memcpy(buf + n, in->iad, in->iad_len);
		n += in->iad_len;
		*pad = TSW_HSM_PAD_2;
		break;
	case TSW_HSM_CVN_VISA_10:
		memcpy(buf + n, in->cvr, in->cvr_len);
		n += in->cvr_len;
		*pad = TSW_HSM_PAD_1;
		break;
	default:
		memcpy(buf + n, in->cvr, in->cvr_len);
		n += in->cvr_len;
		*pad = TSW_HSM_PAD_2;
		break;
	}
	return n;
}

/* The key the CVN MACs with: the ICC master key itself (CVN 10: *ret is
 * mk) or the session key derived from it (into sk, wiped by the caller). */
static int ac_key(const struct tdes2_ks *mk, const struct tsw_hsm_arqc_input *in,
		  struct tdes2_ks *sk, const struct tdes2_ks **ret)
{
	uint8_t key[TDES2_KEY_BYTES];
	int r;

	if (in->cvn == TSW_HSM_CVN_VISA_10) {
		*ret = mk;
		return 0;
	}
	r = hsm__emv_session_key(mk, in, key);
	if (r == 0) {
		hsm__tdes2_ks_set(key, sk);
		*ret = sk;
	}
	OPENSSL_cleanse(key, sizeof(key));
	return r;
}

int hsm__emv_arqc(const struct tdes2_ks *mk, const struct tsw_hsm_arqc_input *in,
		  uint8_t ret_arqc[8])
{
	struct tdes2_ks sk;
	const struct tdes2_ks *key = mk;
	uint8_t buf[MAC_DATA_MAX];
	enum tsw_hsm_pad pad;
	size_t n;
	int r;

	r = ac_key(mk, in, &sk, &key);
	if (r == 0) {
		n = mac_data(in, buf, &pad);
		hsm__emv_retail_mac(key, pad, buf, n, ret_arqc);
	}
	if (key == &sk)
		hsm__tdes2_ks_wipe(&sk);
	return r;
}

int hsm__emv_arpc(const struct tdes2_ks *mk, const struct tsw_hsm_arqc_input *in,
		  const struct tsw_hsm_arpc_params *p, uint8_t *out, size_t *ret_len)
{
	struct tdes2_ks sk;
	const struct tdes2_ks *key = mk;
	uint8_t buf[TDES_BLOCK + 4 + ARPC_PROP_MAX], mac[TDES_BLOCK];
	size_t n;
	int r = 0;

	if (in->cvn == TSW_HSM_CVN_VISA_18 && p->prop_len > ARPC_PROP_MAX)
		return -TSW_E_BAD_INPUT;
	/* Mastercard keys CVN 16's ARPC with the ICC master key */
	if (in->cvn != TSW_HSM_CVN_MC_16)
		r = ac_key(mk, in, &sk, &key);
	if (r < 0)
		goto out;
	switch (in->cvn) {
	case TSW_HSM_CVN_VISA_18:
		/* method 2: MAC over ARQC || CSU || proprietary data, 4 bytes */
		memcpy(buf, in->arqc, 8);
		memcpy(buf + 8, p->csu, 4);
		if (p->prop_len > 0)
			memcpy(buf + 12, p->prop, p->prop_len);
		hsm__emv_retail_mac(key, TSW_HSM_PAD_2, buf, 12 + p->prop_len, mac);
		memcpy(out, mac, 4);
		memcpy(out + 4, p->csu, 4);
		if (p->prop_len > 0)
			memcpy(out + 8, p->prop, p->prop_len);
		n = 8 + p->prop_len;
		break;
	default:
		/* method 1: TDES(ARQC xor ARC || 00 ..) */
		memcpy(buf, in->arqc, 8);
		buf[0] ^= p->arc[0];
		buf[1] ^= p->arc[1];
		hsm__tdes2_ecb(key, 1, buf, TDES_BLOCK, mac);
		memcpy(out, mac, 8);
		memcpy(out + 8, p->arc, 2);
		n = 10;
		break;
	}
	*ret_len = n;
out:
	if (key == &sk)
		hsm__tdes2_ks_wipe(&sk);
	OPENSSL_cleanse(mac, sizeof(mac));
	return r;
}
