/* The public functions: check every argument that needs no key bytes,
 * then call the backend's entry, so a backend sees only valid input. */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "tsw/error.h"

static bool digits(const char *p, size_t len, size_t min, size_t max)
{
	if (!p || len < min || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

static bool bcd(uint8_t b)
{
	return (b >> 4) <= 9 && (b & 0x0f) <= 9;
}

/* 0, or why k cannot serve as a key of kind with an algorithm in algs
 * (a bit per enum tsw_hsm_alg) on session s. */
static int check_key(const struct tsw_hsm_session *s, const struct tsw_hsm_key *k, unsigned kinds,
		     unsigned algs)
{
	if (!k)
		return -TSW_E_NOT_FOUND;
	if (k->hsm != s->hsm || !(kinds & 1u << k->info.kind) || !(algs & 1u << k->info.alg))
		return -TSW_E_BAD_INPUT;
	return 0;
}

#define TDES2_ONLY (1u << TSW_HSM_TDES2)
#define ANY_ALG ((1u << TSW_HSM_ALG_MAX) - 1)
#define AC_KINDS (1u << TSW_HSM_IMK_AC | 1u << TSW_HSM_ICC_MK | 1u << TSW_HSM_SESSION_KEY)
#define ZPK_KINDS (1u << TSW_HSM_ZPK_ACQUIRER | 1u << TSW_HSM_ZPK_ISSUER)
#define AES_ALGS (1u << TSW_HSM_AES128 | 1u << TSW_HSM_AES256)

static int check_input(const struct tsw_hsm_arqc_input *in)
{
	switch (in->cvn) {
	case TSW_HSM_CVN_VISA_10:
		return in->cvr_len == 4 ? 0 : -TSW_E_BAD_INPUT;
	case TSW_HSM_CVN_VISA_18:
		return in->iad_len >= 1 && in->iad_len <= TSW_HSM_IAD_MAX ? 0 : -TSW_E_BAD_INPUT;
	case TSW_HSM_CVN_MC_16:
	case TSW_HSM_CVN_MC_20:
		return in->cvr_len == 6 ? 0 : -TSW_E_BAD_INPUT;
	default:
		return -TSW_E_BAD_INPUT;
	}
}

/* The checks every cryptogram call shares; sets the PSN to use. */
static int check_ac(const struct tsw_hsm_session *s, const struct tsw_hsm_key *imk, const char *pan,
		    size_t pan_len, uint8_t record_psn, const struct tsw_hsm_arqc_input *in,
		    uint8_t *ret_psn)
{
	uint8_t psn = in->has_psn ? in->psn : record_psn;
	int r = check_key(s, imk, 1u << TSW_HSM_IMK_AC, TDES2_ONLY);

	if (r < 0)
		return r;
	if (!digits(pan, pan_len, 1, TSW_HSM_PAN_DIGITS_MAX) || !bcd(psn))
		return -TSW_E_BAD_INPUT;
	r = check_input(in);
	if (r < 0)
		return r;
	*ret_psn = psn;
	return 0;
}

void tsw_hsm_close(struct tsw_hsm *h)
{
	if (h)
		h->ops->close(h);
}

int tsw_hsm_key_import(struct tsw_hsm *h, enum tsw_hsm_kind kind, enum tsw_hsm_alg alg,
		       const uint8_t *bytes, size_t len, struct tsw_hsm_key **ret_key)
{
	/* derived kinds come only from the derive calls */
	if (kind != TSW_HSM_IMK_AC && kind != TSW_HSM_ZPK_ACQUIRER && kind != TSW_HSM_ZPK_ISSUER &&
	    kind != TSW_HSM_TAVV)
		return -TSW_E_BAD_INPUT;
	if ((unsigned)alg >= TSW_HSM_ALG_MAX || len != hsm__alg_key_len(alg) || !bytes)
		return -TSW_E_BAD_INPUT;
	if (kind == TSW_HSM_IMK_AC && alg != TSW_HSM_TDES2)
		return -TSW_E_BAD_INPUT;
	if (kind == TSW_HSM_TAVV && !(AES_ALGS & 1u << alg))
		return -TSW_E_BAD_INPUT;
	if (!h->ops->key_import)
		return -ENOTSUP;
	return h->ops->key_import(h, kind, alg, bytes, len, ret_key);
}

void tsw_hsm_key_free(struct tsw_hsm_key *k)
{
	if (k)
		k->hsm->ops->key_free(k);
}

void tsw_hsm_keys_free(struct tsw_hsm_key *const *keys, size_t n)
{
	const struct tsw_hsm_ops *ops = NULL;

	for (size_t i = 0; i < n; i++) {
		if (!keys[i])
			continue;
		if (ops && keys[i]->hsm->ops != ops)
			ops = NULL; /* keys of two backends: one by one */
		else if (!ops)
			ops = keys[i]->hsm->ops;
	}
	if (ops && ops->keys_free) {
		ops->keys_free(keys, n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		tsw_hsm_key_free(keys[i]);
}

const struct tsw_hsm_key_info *tsw_hsm_key_info(const struct tsw_hsm_key *k)
{
	return &k->info;
}

int tsw_hsm_session_open(struct tsw_hsm *h, struct tsw_hsm_session **ret_s)
{
	return h->ops->session_open(h, ret_s);
}

void tsw_hsm_session_close(struct tsw_hsm_session *s)
{
	if (s)
		s->hsm->ops->session_close(s);
}

int tsw_hsm_derive_icc_mk(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk, const char *pan,
			  size_t pan_len, uint8_t psn, struct tsw_hsm_key **ret_key)
{
	int r = check_key(s, imk, 1u << TSW_HSM_IMK_AC, TDES2_ONLY);

	if (r < 0)
		return r;
	if (!digits(pan, pan_len, 1, TSW_HSM_PAN_DIGITS_MAX) || !bcd(psn))
		return -TSW_E_BAD_INPUT;
	if (!s->hsm->ops->derive_icc_mk)
		return -ENOTSUP;
	return s->hsm->ops->derive_icc_mk(s, imk, pan, pan_len, psn, ret_key);
}

int tsw_hsm_derive_session_key(struct tsw_hsm_session *s, const struct tsw_hsm_key *icc_mk,
			       const struct tsw_hsm_arqc_input *in, struct tsw_hsm_key **ret_key)
{
	int r = check_key(s, icc_mk, 1u << TSW_HSM_ICC_MK, TDES2_ONLY);

	if (r < 0)
		return r;
	if (in->cvn != TSW_HSM_CVN_MC_16 && in->cvn != TSW_HSM_CVN_VISA_18 &&
	    in->cvn != TSW_HSM_CVN_MC_20)
		return -TSW_E_BAD_INPUT;
	if (!s->hsm->ops->derive_session_key)
		return -ENOTSUP;
	return s->hsm->ops->derive_session_key(s, icc_mk, in, ret_key);
}

int tsw_hsm_retail_mac(struct tsw_hsm_session *s, const struct tsw_hsm_key *k, enum tsw_hsm_pad pad,
		       const uint8_t *data, size_t len, uint8_t ret_mac[8])
{
	/* never a PIN key: a MAC over chosen data would be an oracle for it */
	int r = check_key(s, k, AC_KINDS, TDES2_ONLY);

	if (r < 0)
		return r;
	if ((unsigned)pad >= TSW_HSM_PAD_MAX || (len > 0 && !data))
		return -TSW_E_BAD_INPUT;
	if (!s->hsm->ops->retail_mac)
		return -ENOTSUP;
	return s->hsm->ops->retail_mac(s, k, pad, data, len, ret_mac);
}

int tsw_hsm_arqc_verify(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk, const char *pan,
			size_t pan_len, uint8_t record_psn, const struct tsw_hsm_arqc_input *in)
{
	uint8_t psn;
	int r = check_ac(s, imk, pan, pan_len, record_psn, in, &psn);

	if (r < 0)
		return r;
	if (!s->hsm->ops->arqc_verify)
		return -ENOTSUP;
	return s->hsm->ops->arqc_verify(s, imk, pan, pan_len, psn, in);
}

int tsw_hsm_arqc_generate(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk, const char *pan,
			  size_t pan_len, uint8_t record_psn, const struct tsw_hsm_arqc_input *in,
			  uint8_t ret_arqc[8])
{
	uint8_t psn;
	int r = check_ac(s, imk, pan, pan_len, record_psn, in, &psn);

	if (r < 0)
		return r;
	if (!s->hsm->ops->arqc_generate)
		return -ENOTSUP;
	return s->hsm->ops->arqc_generate(s, imk, pan, pan_len, psn, in, ret_arqc);
}

int tsw_hsm_arpc(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk, const char *pan,
		 size_t pan_len, uint8_t record_psn, const struct tsw_hsm_arqc_input *in,
		 const struct tsw_hsm_arpc_params *p, uint8_t out[TSW_HSM_ARPC_DATA_MAX],
		 size_t *ret_len)
{
	uint8_t psn;
	int r = check_ac(s, imk, pan, pan_len, record_psn, in, &psn);

	if (r < 0)
		return r;
	if (p->prop_len > 8 || (p->prop_len > 0 && !p->prop))
		return -TSW_E_BAD_INPUT;
	if (!s->hsm->ops->arpc)
		return -ENOTSUP;
	return s->hsm->ops->arpc(s, imk, pan, pan_len, psn, in, p, out, ret_len);
}

size_t tsw_hsm_pin_block_len(const struct tsw_hsm_key *k)
{
	return k->info.alg == TSW_HSM_AES128 || k->info.alg == TSW_HSM_AES256 ? 16 : 8;
}

static int check_pin_key(const struct tsw_hsm_session *s, const struct tsw_hsm_key *k,
			 const char *pan, size_t pan_len)
{
	int r = check_key(s, k, ZPK_KINDS, ANY_ALG);

	if (r < 0)
		return r;
	if (!digits(pan, pan_len, TSW_HSM_PAN_DIGITS_MIN, TSW_HSM_PAN_DIGITS_MAX))
		return -TSW_E_BAD_INPUT;
	return 0;
}

int tsw_hsm_pin_form(struct tsw_hsm_session *s, const struct tsw_hsm_key *k, const char *pan,
		     size_t pan_len, const char *pin, size_t pin_len,
		     uint8_t out[TSW_HSM_PIN_BLOCK_MAX])
{
	int r = check_pin_key(s, k, pan, pan_len);

	if (r < 0)
		return r;
	if (!digits(pin, pin_len, TSW_HSM_PIN_DIGITS_MIN, TSW_HSM_PIN_DIGITS_MAX))
		return -TSW_E_BAD_INPUT;
	if (!s->hsm->ops->pin_form)
		return -ENOTSUP;
	return s->hsm->ops->pin_form(s, k, pan, pan_len, pin, pin_len, out);
}

int tsw_hsm_pin_verify(struct tsw_hsm_session *s, const struct tsw_hsm_key *k, const char *pan,
		       size_t pan_len, const uint8_t *block, const char *pin, size_t pin_len)
{
	int r = check_pin_key(s, k, pan, pan_len);

	if (r < 0)
		return r;
	if (!block || !digits(pin, pin_len, TSW_HSM_PIN_DIGITS_MIN, TSW_HSM_PIN_DIGITS_MAX))
		return -TSW_E_BAD_INPUT;
	if (!s->hsm->ops->pin_verify)
		return -ENOTSUP;
	return s->hsm->ops->pin_verify(s, k, pan, pan_len, block, pin, pin_len);
}

int tsw_hsm_pin_translate(struct tsw_hsm_session *s, const struct tsw_hsm_key *src,
			  const char *src_pan, size_t src_pan_len, const struct tsw_hsm_key *dst,
			  const char *dst_pan, size_t dst_pan_len, const uint8_t *in,
			  uint8_t out[TSW_HSM_PIN_BLOCK_MAX])
{
	int r = check_pin_key(s, src, src_pan, src_pan_len);

	if (r == 0)
		r = check_pin_key(s, dst, dst_pan, dst_pan_len);
	if (r < 0)
		return r;
	if (!in || tsw_hsm_pin_block_len(src) != tsw_hsm_pin_block_len(dst))
		return -TSW_E_BAD_INPUT;
	if (!s->hsm->ops->pin_translate)
		return -ENOTSUP;
	return s->hsm->ops->pin_translate(s, src, src_pan, src_pan_len, dst, dst_pan, dst_pan_len,
					  in, out);
}

/* The checks both token cryptogram calls share. */
static int check_tavv(const struct tsw_hsm_session *s, const struct tsw_hsm_key *k,
		      const struct tsw_hsm_tavv_input *in)
{
	int r = check_key(s, k, 1u << TSW_HSM_TAVV, AES_ALGS);

	if (r < 0)
		return r;
	if (!digits(in->token, in->token_len, 1, TSW_HSM_PAN_DIGITS_MAX) ||
	    !digits(in->amount, 12, 12, 12) || (in->currency && !digits(in->currency, 3, 3, 3)) ||
	    in->merchant_len > TSW_HSM_TAVV_MERCHANT_MAX || (in->merchant_len > 0 && !in->merchant))
		return -TSW_E_BAD_INPUT;
	return 0;
}

int tsw_hsm_tavv_generate(struct tsw_hsm_session *s, const struct tsw_hsm_key *k,
			  const struct tsw_hsm_tavv_input *in,
			  uint8_t ret_mac[TSW_HSM_TAVV_MAC_BYTES])
{
	int r = check_tavv(s, k, in);

	if (r < 0)
		return r;
	if (!s->hsm->ops->tavv_generate)
		return -ENOTSUP;
	return s->hsm->ops->tavv_generate(s, k, in, ret_mac);
}

int tsw_hsm_tavv_verify(struct tsw_hsm_session *s, const struct tsw_hsm_key *k,
			const struct tsw_hsm_tavv_input *in,
			const uint8_t mac[TSW_HSM_TAVV_MAC_BYTES])
{
	int r = check_tavv(s, k, in);

	if (r < 0)
		return r;
	if (!mac)
		return -TSW_E_BAD_INPUT;
	if (!s->hsm->ops->tavv_verify)
		return -ENOTSUP;
	return s->hsm->ops->tavv_verify(s, k, in, mac);
}
