/* The token cryptogram of DE48 tag 11 (docs/wire.md): its value's two
 * parts, and the message its AES-CMAC covers. The MAC itself is computed
 * by the backend (soft.c, hsm__soft_cmac). */
#include <string.h>

#include "internal.h"
#include "tsw/error.h"

#define TAVV_LABEL "TSWTAVV1" /* names the layout: a new one gets a new label */
#define TAVV_LABEL_BYTES 8u
#define TAVV_COUNTER_HEX 4u
#define TAVV_AMOUNT_DIGITS 12u
#define TAVV_CURRENCY_DIGITS 3u

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int tsw_hsm_tavv_parse(const char *hex, size_t len, uint16_t *ret_counter,
		       uint8_t ret_mac[TSW_HSM_TAVV_MAC_BYTES])
{
	uint8_t b[TSW_HSM_TAVV_HEX / 2];

	if (!hex || len != TSW_HSM_TAVV_HEX)
		return -TSW_E_BAD_INPUT;
	for (size_t i = 0; i < sizeof(b); i++) {
		int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -TSW_E_BAD_INPUT;
		b[i] = (uint8_t)(hi << 4 | lo);
	}
	*ret_counter = (uint16_t)(b[0] << 8 | b[1]);
	memcpy(ret_mac, b + TAVV_COUNTER_HEX / 2, TSW_HSM_TAVV_MAC_BYTES);
	return 0;
}

size_t hsm__tavv_message(const struct tsw_hsm_tavv_input *in, uint8_t buf[HSM_TAVV_MSG_MAX])
{
	size_t n = 0, m = in->merchant_len;

	/* the caller may hand DE42 as it came (15 characters, space-padded):
	 * the length byte counts what is left after trimming either way */
	while (m > 0 && in->merchant[m - 1] == ' ')
		m--;
	memcpy(buf, TAVV_LABEL, TAVV_LABEL_BYTES);
	n += TAVV_LABEL_BYTES;
	buf[n++] = (uint8_t)(in->counter >> 8);
	buf[n++] = (uint8_t)in->counter;
	buf[n++] = (uint8_t)in->token_len;
	memcpy(buf + n, in->token, in->token_len);
	n += in->token_len;
	memcpy(buf + n, in->amount, TAVV_AMOUNT_DIGITS);
	n += TAVV_AMOUNT_DIGITS;
	memcpy(buf + n, in->currency ? in->currency : "000", TAVV_CURRENCY_DIGITS);
	n += TAVV_CURRENCY_DIGITS;
	buf[n++] = (uint8_t)m;
	if (m > 0)
		memcpy(buf + n, in->merchant, m);
	return n + m;
}
