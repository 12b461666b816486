/* The on-disk token record (struct rec) and the token key: a token's
 * digits as one u64 (19 digits fit), the digit count kept in the record,
 * so the LMDB key is an 8-byte integer (MDB_INTEGERKEY).
 *
 * A version 2 record is authenticated as a whole: the AES-GCM seal of its
 * PAN takes as associated data the token digits and every byte of the
 * record outside the nonce, ciphertext and tag (status, limits, domain,
 * key id, merchants, the unused tail of the sealed field). Editing any
 * byte, or moving the value to another token, makes the seal fail to
 * open. Version 1 records (vault format 1) bound only the PAN to the
 * token; they are read only by tokvault, to upgrade them. Version 3 is
 * version 2 with struct rec_tail (cvn, psn) after the merchants, inside
 * the associated data like every byte after the seal; a version 2 record
 * reads as cvn 0, psn 0 (its version byte is authenticated, so a version
 * 3 record cannot be passed off as one). */
#include <endian.h>
#include <openssl/crypto.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "tsw/error.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "record fields are stored in host order, which must be little-endian");

int vault__token_key(const char *token, size_t len, uint64_t *ret_key)
{
	uint64_t k = 0;

	if (len < TSW_TOKEN_MIN_DIGITS || len > TSW_TOKEN_MAX_DIGITS)
		return -TSW_E_BAD_INPUT;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned)(token[i] - '0');

		if (d > 9)
			return -TSW_E_BAD_INPUT;
		k = k * 10 + d;
	}
	*ret_key = k;
	return 0;
}

void vault__token_digits(uint64_t key, unsigned len, char *out)
{
	out[len] = '\0';
	for (unsigned i = len; i > 0; i--) {
		out[i - 1] = (char)('0' + key % 10);
		key /= 10;
	}
}

size_t vault__rec_size(const struct rec *r)
{
	return sizeof(*r) + (size_t)r->n_merchants * sizeof(struct rec_merchant) +
	       (r->version >= REC_VERSION ? sizeof(struct rec_tail) : 0);
}

static struct rec_tail *rec_tail_of(const struct rec *r)
{
	return (struct rec_tail *)((uint8_t *)r + sizeof(*r) +
				   (size_t)r->n_merchants * sizeof(struct rec_merchant));
}

/* Copies a NUL-terminated string into a fixed NUL-padded field. */
static void put_str(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap);

	memcpy(dst, src, n);
	memset(dst + n, 0, cap - n);
}

static void get_str(char *dst, const char *src, size_t cap)
{
	size_t n = strnlen(src, cap);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

size_t vault__rec_encode(const struct tsw_token *t, uint8_t *out)
{
	return vault__rec_encode_as(t, REC_VERSION, out);
}

size_t vault__rec_encode_as(const struct tsw_token *t, unsigned version, uint8_t *out)
{
	struct rec *r = (struct rec *)out;
	uint64_t orig = 0;

	memset(r, 0, sizeof(*r));
	r->version = (uint8_t)version;
	r->status = t->status;
	r->token_len = t->token_len;
	r->flags = (uint8_t)((t->device_required ? REC_F_DEVICE_REQUIRED : 0) |
			     (t->card_suspended ? REC_F_CARD_SUSPENDED : 0));
	r->assurance_level = t->assurance_level;
	r->original_assurance_level = t->original_assurance_level;
	r->pos_modes = (uint8_t)t->pos_modes;
	r->n_merchants = t->n_merchants;
	r->sealed_len = t->sealed_len;
	put_str(r->token_expiry, sizeof(r->token_expiry), t->token_expiry);
	put_str(r->pan_expiry, sizeof(r->pan_expiry), t->pan_expiry);
	put_str(r->trid, sizeof(r->trid), t->trid);
	put_str(r->original_trid, sizeof(r->original_trid), t->original_trid);
	put_str(r->currency, sizeof(r->currency), t->currency);
	put_str(r->par, sizeof(r->par), t->par);
	r->key_id = htole32(t->key_id);
	r->atc_epoch = htole32(t->atc_epoch);
	r->max_uses = htole32(t->max_uses);
	r->valid_from = htole32(t->valid_from);
	r->valid_until = htole32(t->valid_until);
	r->amount_limit = htole64(t->amount_limit);
	r->card_id = htole64(t->card_id);
	if (t->original_token[0] &&
	    vault__token_key(t->original_token, strlen(t->original_token), &orig) == 0)
		r->original_len = (uint8_t)strlen(t->original_token);
	r->original_token = htole64(orig);
	put_str(r->token_ref, sizeof(r->token_ref), t->token_ref);
	put_str(r->original_token_ref, sizeof(r->original_token_ref), t->original_token_ref);
	memcpy(r->sealed, t->sealed_pan, t->sealed_len);
	for (unsigned i = 0; i < t->n_merchants; i++) {
		const struct tsw_token_merchant *m = &t->merchants[i];
		struct rec_merchant *rm = &r->merchants[i];
		size_t n = strnlen(m->merchant_id, REC_MERCHANT_ID_LEN);

		memcpy(rm->merchant_id, m->merchant_id, n);
		memset(rm->merchant_id + n, ' ', REC_MERCHANT_ID_LEN - n);
		put_str(rm->acquirer_id, sizeof(rm->acquirer_id), m->acquirer_id);
		put_str(rm->mcc, sizeof(rm->mcc), m->mcc);
	}
	if (version >= REC_VERSION)
		*rec_tail_of(r) = (struct rec_tail){.cvn = t->cvn, .psn = t->psn};
	return vault__rec_size(r);
}

int vault__rec_check(const void *data, size_t size)
{
	const struct rec *r = data;

	if (size < sizeof(*r) || r->version < REC_VERSION_1 || r->version > REC_VERSION ||
	    r->n_merchants > TSW_TOKEN_MERCHANTS_MAX || size != vault__rec_size(r) ||
	    r->status >= TSW_TOKEN_STATUS_MAX || r->token_len < TSW_TOKEN_MIN_DIGITS ||
	    r->token_len > TSW_TOKEN_MAX_DIGITS || r->sealed_len > TSW_SEALED_PAN_MAX ||
	    (r->original_len &&
	     (r->original_len < TSW_TOKEN_MIN_DIGITS || r->original_len > TSW_TOKEN_MAX_DIGITS)))
		return -TSW_E_CORRUPT;
	if (r->version >= REC_VERSION) {
		const struct rec_tail *tail = rec_tail_of(r);

		if (!TSW_TOKEN_CVN_VALID(tail->cvn) || tail->psn > TSW_TOKEN_PSN_MAX)
			return -TSW_E_CORRUPT;
	}
	return 0;
}

int vault__rec_decode(const void *data, size_t size, uint64_t key, struct tsw_token *ret_token)
{
	const struct rec *r = data;
	struct tsw_token *t = ret_token;

	if (vault__rec_check(data, size) < 0)
		return -TSW_E_CORRUPT;
	/* Only the fixed part is cleared: merchant slots past n_merchants
	 * are never read. */
	memset(t, 0, offsetof(struct tsw_token, merchants));
	memset(&t->amount_limit, 0, sizeof(*t) - offsetof(struct tsw_token, amount_limit));
	vault__token_digits(key, r->token_len, t->token);
	t->token_len = r->token_len;
	t->status = r->status;
	t->card_suspended = (r->flags & REC_F_CARD_SUSPENDED) != 0;
	t->device_required = (r->flags & REC_F_DEVICE_REQUIRED) != 0;
	t->assurance_level = r->assurance_level;
	get_str(t->token_expiry, r->token_expiry, sizeof(r->token_expiry));
	get_str(t->pan_expiry, r->pan_expiry, sizeof(r->pan_expiry));
	get_str(t->trid, r->trid, sizeof(r->trid));
	get_str(t->token_ref, r->token_ref, sizeof(r->token_ref));
	get_str(t->par, r->par, sizeof(r->par));
	t->pos_modes = r->pos_modes;
	t->n_merchants = r->n_merchants;
	for (unsigned i = 0; i < r->n_merchants; i++) {
		const struct rec_merchant *rm = &r->merchants[i];
		struct tsw_token_merchant *m = &t->merchants[i];

		memcpy(m->merchant_id, rm->merchant_id, REC_MERCHANT_ID_LEN);
		m->merchant_id[REC_MERCHANT_ID_LEN] = '\0';
		get_str(m->acquirer_id, rm->acquirer_id, sizeof(rm->acquirer_id));
		get_str(m->mcc, rm->mcc, sizeof(rm->mcc));
	}
	t->amount_limit = le64toh(r->amount_limit);
	get_str(t->currency, r->currency, sizeof(r->currency));
	t->max_uses = le32toh(r->max_uses);
	t->valid_from = le32toh(r->valid_from);
	t->valid_until = le32toh(r->valid_until);
	if (r->original_len)
		vault__token_digits(le64toh(r->original_token), r->original_len, t->original_token);
	get_str(t->original_trid, r->original_trid, sizeof(r->original_trid));
	get_str(t->original_token_ref, r->original_token_ref, sizeof(r->original_token_ref));
	t->original_assurance_level = r->original_assurance_level;
	t->key_id = le32toh(r->key_id);
	t->card_id = le64toh(r->card_id);
	memcpy(t->sealed_pan, r->sealed, r->sealed_len);
	t->sealed_len = r->sealed_len;
	t->atc_epoch = le32toh(r->atc_epoch);
	t->rec_version = r->version;
	if (r->version >= REC_VERSION) {
		t->cvn = rec_tail_of(r)->cvn;
		t->psn = rec_tail_of(r)->psn;
	}
	return 0;
}

/* The associated data of r's seal: the token digits, then every byte
 * before the sealed PAN and every byte after it (the sealed field's
 * unused tail, the merchants). */
static unsigned rec_aad(const struct rec *r, size_t size, const char *digits, struct aad out[3])
{
	size_t seal_off = offsetof(struct rec, sealed), end = seal_off + r->sealed_len;

	out[0] = (struct aad){.ptr = digits, .len = r->token_len};
	if (r->version == REC_VERSION_1)
		return 1;
	out[1] = (struct aad){.ptr = r, .len = seal_off};
	out[2] = (struct aad){.ptr = (const uint8_t *)r + end, .len = size - end};
	return 3;
}

int vault__rec_seal(struct pan_crypto *c, uint8_t *rec, size_t size, uint64_t key, const char *pan,
		    size_t pan_len, const uint8_t *nonce)
{
	struct rec *r = (struct rec *)rec;
	char digits[TSW_TOKEN_MAX_DIGITS + 1];
	struct aad aad[3];
	uint32_t id = 0;
	int slot = vault__crypto_current_slot(c, &id);
	unsigned n;

	/* a version 1 record becomes version 2 (the same layout); version 2
	 * and 3 keep theirs: the layout, and so the size, stays */
	if (r->version < REC_VERSION_2)
		r->version = REC_VERSION_2;
	if (pan_len < 1 || pan_len > TSW_PAN_MAX_DIGITS || size != vault__rec_size(r))
		return -TSW_E_BAD_INPUT;
	r->key_id = htole32(id);
	r->sealed_len = (uint8_t)(NONCE_BYTES + pan_len + TAG_BYTES);
	memset(r->sealed, 0, sizeof(r->sealed));
	vault__token_digits(key, r->token_len, digits);
	n = rec_aad(r, size, digits, aad);
	return vault__crypto_seal(c, slot, aad, n, pan, pan_len, nonce, r->sealed);
}

int vault__rec_open(struct pan_crypto *c, const uint8_t *rec, size_t size, uint64_t key,
		    bool allow_v1, char *out, size_t cap)
{
	const struct rec *r = (const struct rec *)rec;
	char digits[TSW_TOKEN_MAX_DIGITS + 1];
	char scratch[TSW_PAN_MAX_DIGITS];
	struct aad aad[3];
	unsigned n;
	int len;

	if (vault__rec_check(rec, size) < 0)
		return -TSW_E_CORRUPT;
	if (r->version == REC_VERSION_1 && !allow_v1)
		return -TSW_E_INTEGRITY; /* a downgraded record in an authenticated vault */
	vault__token_digits(key, r->token_len, digits);
	n = rec_aad(r, size, digits, aad);
	len = vault__crypto_open(c, le32toh(r->key_id), aad, n, r->sealed, r->sealed_len,
				 out ? out : scratch, out ? cap : sizeof(scratch));
	if (!out)
		OPENSSL_cleanse(scratch, sizeof(scratch));
	return len;
}

int vault__rec_set_flags(struct pan_crypto *c, uint8_t *rec, size_t size, uint64_t key,
			 bool allow_v1, uint8_t flags)
{
	struct rec *r = (struct rec *)rec;
	char pan[TSW_PAN_MAX_DIGITS];
	int len, ret;

	if (r->flags == flags && r->version != REC_VERSION_1)
		return 0;
	len = vault__rec_open(c, rec, size, key, allow_v1, pan, sizeof(pan));
	if (len < 0)
		return len;
	r->flags = flags;
	ret = vault__rec_seal(c, rec, size, key, pan, (size_t)len, NULL);
	OPENSSL_cleanse(pan, sizeof(pan));
	return ret;
}
