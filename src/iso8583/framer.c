/* Incremental frame reader: length header + body, split anywhere. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/error.h"
#include "tsw/iso8583.h"

#define FRAMER_HDR_MAX 4 /* the largest length header (ASCII4) */

int tsw_iso_framer_init(struct tsw_iso_framer *fr, const struct tsw_iso_profile *p)
{
	memset(fr, 0, sizeof(*fr));
	fr->acc = malloc((size_t)p->max_frame + FRAMER_HDR_MAX);
	if (!fr->acc)
		return -ENOMEM;
	fr->p = p;
	return 0;
}

/* Wipes the bytes of acc that held a frame or part of one: only those,
 * so a connection of small frames pays for small wipes. */
static void wipe_acc(struct tsw_iso_framer *fr)
{
	if (fr->acc && fr->acc_dirty)
		explicit_bzero(fr->acc, fr->acc_dirty);
	fr->acc_dirty = 0;
	fr->acc_returned = 0;
}

/* Copies n input bytes to the end of what acc holds. */
static void acc_append(struct tsw_iso_framer *fr, const uint8_t *in, size_t n)
{
	memcpy(fr->acc + fr->acc_len, in, n);
	fr->acc_len += (uint32_t)n;
	if (fr->acc_len > fr->acc_dirty)
		fr->acc_dirty = fr->acc_len;
}

void tsw_iso_framer_reset(struct tsw_iso_framer *fr)
{
	wipe_acc(fr);
	fr->acc_len = 0;
	fr->need = 0;
	fr->have_hdr = 0;
}

void tsw_iso_framer_free(struct tsw_iso_framer *fr)
{
	tsw_iso_framer_reset(fr);
	free(fr->acc);
	fr->acc = NULL;
}

static int parse_header(const struct tsw_iso_profile *p, const uint8_t *h, uint32_t *ret_len)
{
	uint32_t v = 0;

	if (p->header == TSW_ISO_HDR_ASCII4) {
		for (unsigned i = 0; i < 4; i++) {
			if (h[i] < '0' || h[i] > '9')
				return -TSW_E_BAD_HEADER;
			v = v * 10 + (uint32_t)(h[i] - '0');
		}
	} else {
		v = (uint32_t)h[0] << 8 | h[1];
	}
	if (v > p->max_frame)
		return -TSW_E_FRAME_TOO_BIG;
	*ret_len = v;
	return 0;
}

int tsw_iso_framer_next(struct tsw_iso_framer *fr, const uint8_t *in, size_t in_len, size_t *in_off,
			const uint8_t **ret_frame, size_t *ret_len)
{
	size_t hs = tsw_iso_header_size(fr->p);
	size_t off = *in_off, avail, take;
	int r;

	/* the frame returned last from acc is consumed: the caller calls
	 * again only once it is done with it */
	if (fr->acc_returned)
		wipe_acc(fr);
	if (off >= in_len)
		return 0;
	avail = in_len - off;

	if (hs == 0) {
		/* no framing: the whole buffer is one message */
		if (avail > fr->p->max_frame)
			return -TSW_E_FRAME_TOO_BIG;
		*in_off = in_len;
		*ret_frame = in + off;
		*ret_len = avail;
		return 1;
	}

	if (!fr->have_hdr) {
		const uint8_t *h;

		if (fr->acc_len == 0 && avail >= hs) {
			h = in + off;
			off += hs;
		} else {
			take = hs - fr->acc_len;
			if (take > avail)
				take = avail;
			acc_append(fr, in + off, take);
			off += take;
			if (fr->acc_len < hs) {
				*in_off = off;
				return 0;
			}
			h = fr->acc;
		}
		r = parse_header(fr->p, h, &fr->need);
		if (r < 0)
			return r;
		fr->acc_len = 0;
		if (fr->need == 0) {
			*in_off = off;
			*ret_frame = fr->acc; /* keep-alive: len 0 */
			*ret_len = 0;
			return 1;
		}
		fr->have_hdr = 1;
		avail = in_len - off;
	}

	if (fr->acc_len == 0 && avail >= fr->need) {
		*ret_frame = in + off;
		*ret_len = fr->need;
		*in_off = off + fr->need;
		fr->have_hdr = 0;
		fr->need = 0;
		return 1;
	}
	take = fr->need - fr->acc_len;
	if (take > avail)
		take = avail;
	acc_append(fr, in + off, take);
	*in_off = off + take;
	if (fr->acc_len < fr->need)
		return 0;
	*ret_frame = fr->acc;
	*ret_len = fr->need;
	fr->have_hdr = 0;
	fr->need = 0;
	fr->acc_len = 0;
	fr->acc_returned = 1;
	return 1;
}
