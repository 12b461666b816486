/* Row validation and the lifecycle operations of the write side: status,
 * card suspension, reissue relink, device bindings, re-personalization,
 * provisioning, stats and rekey. Each runs in its own write transaction
 * and leaves the vault unchanged when it fails. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tsw/error.h"
#include "tsw/luhn.h"

static bool all_digits(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

static bool yymm_valid(const char *s)
{
	size_t n = strnlen(s, 5);

	return n == 4 && all_digits(s, 4) &&
	       ((s[2] == '0' && s[3] >= '1') || (s[2] == '1' && s[3] <= '2'));
}

static bool digits_or_empty(const char *s, size_t cap, size_t want)
{
	size_t n = strnlen(s, cap);

	return n == 0 || (n == want && all_digits(s, n));
}

int vault__row_check(const struct tsw_vault *v, const struct tsw_vault_row *row,
		     const char **ret_reason)
{
	const struct tsw_token *t = &row->token;
	size_t tl = strnlen(t->token, sizeof(t->token));
	const char *why = NULL;
	int r = -TSW_E_BAD_INPUT;

	if (tl < TSW_TOKEN_MIN_DIGITS || tl > TSW_TOKEN_MAX_DIGITS || !all_digits(t->token, tl))
		why = "token: not 13-19 digits";
	else if (!tsw_luhn_valid(t->token, tl))
		why = "token: Luhn check fails";
	else if (!tsw_vault_in_token_range(v, t->token, tl))
		why = "token: outside every token BIN range", r = -TSW_E_OUT_OF_RANGE;
	else if (row->pan_len < TSW_PAN_MIN_DIGITS || row->pan_len > TSW_PAN_MAX_DIGITS ||
		 !all_digits(row->pan, row->pan_len))
		why = "pan: not 12-19 digits";
	else if (!tsw_luhn_valid(row->pan, row->pan_len))
		why = "pan: Luhn check fails";
	else if (!yymm_valid(t->token_expiry))
		why = "token_expiry: not YYMM";
	else if (!yymm_valid(t->pan_expiry))
		why = "pan_expiry: not YYMM";
	else if (t->status >= TSW_TOKEN_STATUS_MAX)
		why = "status: unknown";
	else if (!digits_or_empty(t->trid, sizeof(t->trid), TSW_TRID_LEN))
		why = "trid: not 11 digits";
	else if (t->assurance_level > 99)
		why = "assurance_level: not 0-99";
	else if (t->pos_modes >= (1u << TSW_POS_MODE_MAX))
		why = "pos_modes: unknown mode";
	else if (t->n_merchants > TSW_TOKEN_MERCHANTS_MAX)
		why = "merchant_ids: too many";
	else if (!digits_or_empty(t->currency, sizeof(t->currency), 3))
		why = "currency: not 3 digits";
	else if (!printable(t->par, strnlen(t->par, sizeof(t->par))))
		why = "par: not printable";
	else if (!printable(t->token_ref, strnlen(t->token_ref, sizeof(t->token_ref))))
		why = "token_ref: not printable";
	else if (!printable(row->device_ref, strnlen(row->device_ref, sizeof(row->device_ref))))
		why = "device_ref: not printable";
	else if (t->valid_from && t->valid_until && t->valid_from > t->valid_until)
		why = "validity window: from after until";
	else if (!TSW_TOKEN_CVN_VALID(t->cvn))
		why = "cvn: not empty, 10, 16, 18 or 20";
	else if (t->psn > TSW_TOKEN_PSN_MAX)
		why = "psn: not two digits";
	if (!why && t->original_token[0]) {
		size_t ol = strnlen(t->original_token, sizeof(t->original_token));

		if (ol < TSW_TOKEN_MIN_DIGITS || ol > TSW_TOKEN_MAX_DIGITS ||
		    !all_digits(t->original_token, ol))
			why = "original_token: not 13-19 digits";
		else if (ol == tl && memcmp(t->original_token, t->token, tl) == 0)
			why = "original_token: same as token";
	}
	for (unsigned i = 0; !why && i < t->n_merchants; i++) {
		const struct tsw_token_merchant *m = &t->merchants[i];
		size_t ml = strnlen(m->merchant_id, sizeof(m->merchant_id));
		size_t al = strnlen(m->acquirer_id, sizeof(m->acquirer_id));

		if (ml == 0 || !printable(m->merchant_id, ml))
			why = "merchant_ids: empty or not printable";
		else if (!all_digits(m->acquirer_id, al))
			why = "merchant_ids: acquirer id not digits";
		else if (!digits_or_empty(m->mcc, sizeof(m->mcc), 4))
			why = "merchant_ids: mcc not 4 digits";
	}
	if (!why)
		return 0;
	*ret_reason = why;
	return r;
}

static uint64_t card_id_of(const uint8_t card_key[CARD_KEY_BYTES])
{
	uint64_t id;

	memcpy(&id, card_key, sizeof(id));
	return id;
}

int vault__row_card(struct pan_crypto *c, const struct tsw_vault_row *row, struct tsw_token *t,
		    uint8_t card_key[CARD_KEY_BYTES])
{
	int r;

	t->token_len = (uint8_t)strnlen(t->token, sizeof(t->token));
	r = vault__crypto_card_key(c, row->pan, row->pan_len, card_key);
	if (r < 0)
		return r;
	t->card_id = card_id_of(card_key);
	return 0;
}

int vault__encode_sealed(struct pan_crypto *c, const struct tsw_token *t, uint64_t key,
			 const char *pan, size_t pan_len, const uint8_t *nonce, uint8_t *out,
			 size_t *ret_len)
{
	size_t len = vault__rec_encode(t, out);
	int r = vault__rec_seal(c, out, len, key, pan, pan_len, nonce);

	if (r < 0)
		return r;
	*ret_len = len;
	return 0;
}

int vault__card_flags(struct tsw_vault *v, MDB_txn *txn, const uint8_t card_key[CARD_KEY_BYTES],
		      uint8_t *ret_flags)
{
	MDB_val k = {.mv_size = CARD_KEY_BYTES, .mv_data = (void *)card_key}, d;
	int rc = mdb_get(txn, v->dbi_cards, &k, &d);

	if (rc == MDB_NOTFOUND) {
		*ret_flags = 0;
		return 0;
	}
	if (rc)
		return mdb_to_errno(rc);
	*ret_flags = d.mv_size ? *(const uint8_t *)d.mv_data : 0;
	return 0;
}

int vault__put_rec(struct tsw_vault *v, struct pan_crypto *c, MDB_txn *txn, uint64_t key,
		   struct tsw_token *t, const char *pan, size_t pan_len,
		   const uint8_t card_key[CARD_KEY_BYTES], const char *device_ref,
		   unsigned put_flags, uint8_t *rec, const char **ret_reason)
{
	MDB_val k = {.mv_size = sizeof(key), .mv_data = &key};
	MDB_val d = {.mv_size = 0, .mv_data = rec};
	MDB_val ck = {.mv_size = CARD_KEY_BYTES, .mv_data = (void *)card_key};
	uint8_t cflags = 0;
	int rc, err;

	err = vault__index_guard(v, txn);
	if (err < 0)
		return err;
	/* the card's state is part of what the seal authenticates */
	err = vault__card_flags(v, txn, card_key, &cflags);
	if (err < 0)
		return err;
	t->card_suspended = (cflags & CARD_F_SUSPENDED) != 0;
	err = vault__encode_sealed(c, t, key, pan, pan_len, NULL, rec, &d.mv_size);
	if (err < 0)
		return err;
	rc = vault__put(v, txn, v->dbi_tokens, &k, &d, MDB_NOOVERWRITE | put_flags);
	if (rc == MDB_KEYEXIST) {
		*ret_reason = "token already in the vault";
		return -TSW_E_EXISTS;
	}
	if (rc)
		return mdb_to_errno(rc);
	d.mv_size = sizeof(key);
	d.mv_data = &key;
	rc = vault__put(v, txn, v->dbi_index, &ck, &d, 0);
	if (rc)
		return mdb_to_errno(rc);
	if (device_ref && device_ref[0]) {
		d.mv_size = strlen(device_ref);
		d.mv_data = (void *)device_ref;
		rc = vault__put(v, txn, v->dbi_devices, &k, &d, 0);
		if (rc)
			return mdb_to_errno(rc);
	}
	return 0;
}

/* A stored record, authenticated, decoded, and its PAN (pan NULL: not
 * wanted). A record failing authentication is -TSW_E_INTEGRITY: no verb
 * seals an edited record again, which would make the edit authentic. */
int vault__read_rec(struct tsw_vault *v, struct pan_crypto *c, const MDB_val *d, uint64_t key,
		    struct tsw_token *ret_token, char *pan, size_t *ret_pan_len)
{
	int n = vault__rec_open(c, d->mv_data, d->mv_size, key, vault__format1(v), pan,
				pan ? TSW_PAN_MAX_DIGITS : 0);

	if (n < 0)
		return n == -TSW_E_NOT_FOUND ? -TSW_E_INTEGRITY : n;
	if (ret_pan_len)
		*ret_pan_len = (size_t)n;
	return vault__rec_decode(d->mv_data, d->mv_size, key, ret_token);
}

static int get_token(struct tsw_vault *v, struct pan_crypto *c, MDB_txn *txn, const char *token,
		     size_t len, uint64_t *ret_key, struct tsw_token *ret_token, char *pan,
		     size_t *ret_pan_len)
{
	uint64_t key;
	MDB_val k = {.mv_size = sizeof(key), .mv_data = &key}, d;
	int rc;

	if (vault__token_key(token, len, &key) < 0)
		return -TSW_E_NOT_FOUND;
	rc = mdb_get(txn, v->dbi_tokens, &k, &d);
	if (rc)
		return mdb_to_errno(rc);
	if (d.mv_size >= sizeof(struct rec) && ((const struct rec *)d.mv_data)->token_len != len)
		return -TSW_E_NOT_FOUND;
	*ret_key = key;
	return vault__read_rec(v, c, &d, key, ret_token, pan, ret_pan_len);
}

/* Writes t back over its record, sealing pan again (fresh nonce, current
 * key): every change is authenticated as the record's new content. */
static int rewrite_token(struct tsw_vault *v, struct pan_crypto *c, MDB_txn *txn, uint64_t key,
			 const struct tsw_token *t, const char *pan, size_t pan_len)
{
	uint8_t buf[REC_MAX_BYTES];
	MDB_val k = {.mv_size = sizeof(key), .mv_data = &key};
	MDB_val d = {.mv_size = 0, .mv_data = buf};
	int r = vault__encode_sealed(c, t, key, pan, pan_len, NULL, buf, &d.mv_size);

	if (r == 0)
		r = mdb_to_errno(vault__put(v, txn, v->dbi_tokens, &k, &d, 0));
	OPENSSL_cleanse(buf, sizeof(buf));
	return r;
}

int vault__link_original(struct tsw_vault *v, MDB_txn *txn, struct tsw_token *t,
			 const char **ret_reason)
{
	struct tsw_token o;
	struct pan_crypto c;
	uint64_t okey;
	int r;

	if (!t->original_token[0])
		return 0;
	vault__crypto_init(&c, v->keys);
	r = get_token(v, &c, txn, t->original_token, strlen(t->original_token), &okey, &o, NULL,
		      NULL);
	vault__crypto_free(&c);
	if (r == -TSW_E_INTEGRITY) {
		*ret_reason = "original_token: its record fails authentication";
		return r;
	}
	if (r < 0) {
		*ret_reason = "original_token: not in the vault";
		return r;
	}
	memcpy(t->original_trid, o.trid, sizeof(o.trid));
	memcpy(t->original_token_ref, o.token_ref, sizeof(o.token_ref));
	t->original_assurance_level = o.assurance_level;
	return 0;
}

static int begin_write(struct tsw_vault *v, MDB_txn **ret_txn)
{
	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	return vault__txn_begin(v, ret_txn);
}

static int commit_or_abort(struct tsw_vault *v, MDB_txn *txn, int r)
{
	if (r < 0) {
		mdb_txn_abort(txn);
		return r;
	}
	return vault__txn_commit(v, txn);
}

/* What a single-token verb changes in its record. */
enum token_edit { EDIT_STATUS, EDIT_ATC_EPOCH };

/* Reads token's record (authenticated), applies the edit (arg: the new
 * status, or the new device's PSN), seals it again. */
static int edit_token(struct tsw_vault *v, const char *token, size_t len, enum token_edit edit,
		      int arg, struct tsw_token *ret_old, struct tsw_token *ret_new)
{
	char pan[TSW_PAN_MAX_DIGITS];
	struct tsw_token t;
	struct pan_crypto c;
	size_t pan_len = 0;
	uint64_t key;
	MDB_txn *txn;
	int r;

	r = begin_write(v, &txn);
	if (r < 0)
		return r;
	vault__crypto_init(&c, v->keys);
	r = get_token(v, &c, txn, token, len, &key, &t, pan, &pan_len);
	if (r < 0)
		goto out;
	*ret_old = t;
	if (edit == EDIT_STATUS) {
		t.status = (uint8_t)arg;
	} else {
		/* the old device's cryptograms must not verify once its ATC
		 * starts over: the new one gets a PSN no earlier device had,
		 * so PSNs only go up (a token at 99 needs a new token) */
		unsigned psn = arg == TSW_VAULT_PSN_NEXT ? t.psn + 1u : (unsigned)arg;

		if ((arg != TSW_VAULT_PSN_NEXT && arg < 0) || psn > TSW_TOKEN_PSN_MAX ||
		    psn <= t.psn) {
			r = -TSW_E_BAD_INPUT;
			goto out;
		}
		t.psn = (uint8_t)psn;
		t.atc_epoch++;
	}
	r = rewrite_token(v, &c, txn, key, &t, pan, pan_len);
	if (r == 0)
		*ret_new = t;
out:
	OPENSSL_cleanse(pan, sizeof(pan));
	vault__crypto_free(&c);
	return commit_or_abort(v, txn, r);
}

int tsw_vault_set_status(struct tsw_vault *v, const char *token, size_t len,
			 enum tsw_token_status status, enum tsw_token_status *ret_old)
{
	struct tsw_token old, now;
	int r;

	if ((unsigned)status >= TSW_TOKEN_STATUS_MAX)
		return -TSW_E_BAD_INPUT;
	r = edit_token(v, token, len, EDIT_STATUS, (uint8_t)status, &old, &now);
	if (r == 0 && ret_old)
		*ret_old = (enum tsw_token_status)old.status;
	return r;
}

int tsw_vault_repersonalize(struct tsw_vault *v, const char *token, size_t len, int psn,
			    uint32_t *ret_epoch, unsigned *ret_psn)
{
	struct tsw_token old, now;
	int r = edit_token(v, token, len, EDIT_ATC_EPOCH, psn, &old, &now);

	if (r == 0 && ret_epoch)
		*ret_epoch = now.atc_epoch;
	if (r == 0 && ret_psn)
		*ret_psn = now.psn;
	return r;
}

static int device_ref_ok(const char *ref, size_t len)
{
	return len > 0 && len <= TSW_DEVICE_REF_MAX && printable(ref, len) ? 0 : -TSW_E_BAD_INPUT;
}

int tsw_vault_bind_device(struct tsw_vault *v, const char *token, size_t len, const char *ref,
			  size_t ref_len)
{
	struct tsw_token t;
	uint64_t key;
	MDB_val k = {.mv_size = sizeof(key), .mv_data = &key};
	MDB_val d = {.mv_size = ref_len, .mv_data = (void *)ref};
	MDB_cursor *cur = NULL;
	struct pan_crypto c;
	size_t count = 0;
	MDB_txn *txn;
	int r, rc;

	r = device_ref_ok(ref, ref_len);
	if (r < 0)
		return r;
	r = begin_write(v, &txn);
	if (r < 0)
		return r;
	vault__crypto_init(&c, v->keys);
	r = get_token(v, &c, txn, token, len, &key, &t, NULL, NULL);
	vault__crypto_free(&c);
	if (r < 0)
		goto out;
	r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_devices, &cur));
	if (r < 0)
		goto out;
	rc = mdb_cursor_get(cur, &k, NULL, MDB_SET);
	if (rc == 0)
		mdb_cursor_count(cur, &count);
	if (count >= TSW_VAULT_DEVICES_PER_TOKEN_MAX) {
		r = -TSW_E_FULL;
		goto out;
	}
	k.mv_data = &key;
	k.mv_size = sizeof(key);
	rc = vault__put(v, txn, v->dbi_devices, &k, &d, MDB_NODUPDATA);
	r = rc == MDB_KEYEXIST ? -TSW_E_EXISTS : mdb_to_errno(rc);
out:
	mdb_cursor_close(cur);
	return commit_or_abort(v, txn, r);
}

int tsw_vault_unbind_device(struct tsw_vault *v, const char *token, size_t len, const char *ref,
			    size_t ref_len)
{
	struct tsw_token t;
	uint64_t key;
	MDB_val k = {.mv_size = sizeof(key), .mv_data = &key};
	MDB_val d = {.mv_size = ref_len, .mv_data = (void *)ref};
	struct pan_crypto c;
	MDB_txn *txn;
	int r;

	r = device_ref_ok(ref, ref_len);
	if (r < 0)
		return r;
	r = begin_write(v, &txn);
	if (r < 0)
		return r;
	vault__crypto_init(&c, v->keys);
	r = get_token(v, &c, txn, token, len, &key, &t, NULL, NULL);
	vault__crypto_free(&c);
	if (r == 0)
		r = mdb_to_errno(vault__del(v, txn, v->dbi_devices, &k, &d));
	return commit_or_abort(v, txn, r);
}

/* The token values indexed under card_key (malloc'ed array). */
static int card_tokens(struct tsw_vault *v, MDB_txn *txn, const uint8_t card_key[CARD_KEY_BYTES],
		       uint64_t **ret_keys, size_t *ret_n)
{
	MDB_val k = {.mv_size = CARD_KEY_BYTES, .mv_data = (void *)card_key}, d;
	MDB_cursor *cur = NULL;
	uint64_t *keys = NULL;
	size_t count = 0;
	size_t n = 0;
	int r, rc;

	r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_index, &cur));
	if (r < 0)
		return r;
	rc = mdb_cursor_get(cur, &k, &d, MDB_SET_KEY);
	if (rc) {
		r = mdb_to_errno(rc);
		goto out;
	}
	mdb_cursor_count(cur, &count);
	keys = calloc(count ? count : 1, sizeof(*keys));
	if (!keys) {
		r = -ENOMEM;
		goto out;
	}
	do {
		if (d.mv_size != sizeof(uint64_t) || n >= count) {
			r = -TSW_E_CORRUPT;
			goto out;
		}
		memcpy(&keys[n++], d.mv_data, sizeof(uint64_t));
	} while ((rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT_DUP)) == 0);
	if (rc != MDB_NOTFOUND) {
		r = mdb_to_errno(rc);
		goto out;
	}
	*ret_keys = keys;
	*ret_n = n;
	keys = NULL;
out:
	free(keys);
	mdb_cursor_close(cur);
	return r;
}

static int get_by_key(struct tsw_vault *v, struct pan_crypto *c, MDB_txn *txn, uint64_t key,
		      struct tsw_token *ret, char *pan, size_t *ret_pan_len)
{
	MDB_val k = {.mv_size = sizeof(key), .mv_data = &key}, d;
	int rc = mdb_get(txn, v->dbi_tokens, &k, &d);

	if (rc)
		return rc == MDB_NOTFOUND ? -TSW_E_CORRUPT : mdb_to_errno(rc);
	return vault__read_rec(v, c, &d, key, ret, pan, ret_pan_len);
}

static int pan_ok(const char *pan, size_t len)
{
	return len >= TSW_PAN_MIN_DIGITS && len <= TSW_PAN_MAX_DIGITS && all_digits(pan, len)
		   ? 0
		   : -TSW_E_BAD_INPUT;
}

int tsw_vault_set_card_suspended(struct tsw_vault *v, const char *pan, size_t pan_len,
				 bool suspended, size_t *ret_tokens)
{
	uint8_t card_key[CARD_KEY_BYTES];
	struct pan_crypto c;
	uint64_t *keys = NULL;
	size_t n = 0;
	uint8_t flags = suspended ? CARD_F_SUSPENDED : 0;
	MDB_val k = {.mv_size = CARD_KEY_BYTES, .mv_data = card_key};
	MDB_val d = {.mv_size = 1, .mv_data = &flags};
	MDB_txn *txn;
	int r;

	r = pan_ok(pan, pan_len);
	if (r < 0)
		return r;
	vault__crypto_init(&c, v->keys);
	r = vault__crypto_card_key(&c, pan, pan_len, card_key);
	if (r < 0)
		goto out_crypto;
	r = begin_write(v, &txn);
	if (r < 0)
		goto out_crypto;
	r = vault__index_guard(v, txn);
	if (r == 0)
		r = card_tokens(v, txn, card_key, &keys, &n);
	if (r < 0)
		goto out;
	r = mdb_to_errno(vault__put(v, txn, v->dbi_cards, &k, &d, 0));
	for (size_t i = 0; r == 0 && i < n; i++) {
		char tpan[TSW_PAN_MAX_DIGITS];
		struct tsw_token t;
		size_t tlen = 0;

		r = get_by_key(v, &c, txn, keys[i], &t, tpan, &tlen);
		if (r == 0) {
			t.card_suspended = suspended;
			r = rewrite_token(v, &c, txn, keys[i], &t, tpan, tlen);
		}
		OPENSSL_cleanse(tpan, sizeof(tpan));
	}
out:
	free(keys);
	r = commit_or_abort(v, txn, r);
out_crypto:
	OPENSSL_cleanse(card_key, sizeof(card_key));
	vault__crypto_free(&c);
	if (r == 0 && ret_tokens)
		*ret_tokens = n;
	return r;
}

int tsw_vault_update_pan(struct tsw_vault *v, const char *old_pan, size_t old_len,
			 const char *new_pan, size_t new_len, const char *new_expiry,
			 size_t *ret_tokens)
{
	uint8_t old_key[CARD_KEY_BYTES], new_key[CARD_KEY_BYTES];
	struct pan_crypto c;
	uint64_t *keys = NULL;
	uint8_t cflags = 0;
	size_t n = 0;
	MDB_txn *txn = NULL;
	int r;

	if (pan_ok(old_pan, old_len) < 0 || pan_ok(new_pan, new_len) < 0 ||
	    !tsw_luhn_valid(new_pan, new_len) || !new_expiry || !yymm_valid(new_expiry))
		return -TSW_E_BAD_INPUT;
	vault__crypto_init(&c, v->keys);
	r = vault__crypto_card_key(&c, old_pan, old_len, old_key);
	if (r == 0)
		r = vault__crypto_card_key(&c, new_pan, new_len, new_key);
	if (r < 0)
		goto out_wipe;
	r = begin_write(v, &txn);
	if (r < 0)
		goto out_wipe;
	r = vault__index_guard(v, txn);
	if (r == 0)
		r = card_tokens(v, txn, old_key, &keys, &n);
	if (r == 0)
		r = vault__card_flags(v, txn, new_key, &cflags);
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct tsw_token t;

		r = get_by_key(v, &c, txn, keys[i], &t, NULL, NULL);
		if (r < 0)
			break;
		t.card_id = card_id_of(new_key);
		memcpy(t.pan_expiry, new_expiry, 4);
		t.pan_expiry[4] = '\0';
		t.card_suspended = (cflags & CARD_F_SUSPENDED) != 0;
		r = rewrite_token(v, &c, txn, keys[i], &t, new_pan, new_len);
	}
	if (r == 0 && memcmp(old_key, new_key, CARD_KEY_BYTES) != 0) {
		MDB_val k = {.mv_size = CARD_KEY_BYTES, .mv_data = old_key};

		r = mdb_to_errno(vault__del(v, txn, v->dbi_index, &k, NULL));
		k.mv_data = new_key;
		for (size_t i = 0; r == 0 && i < n; i++) {
			MDB_val d = {.mv_size = sizeof(uint64_t), .mv_data = &keys[i]};

			r = mdb_to_errno(vault__put(v, txn, v->dbi_index, &k, &d, 0));
		}
	}
	r = commit_or_abort(v, txn, r);
	if (r == 0 && ret_tokens)
		*ret_tokens = n;
out_wipe:
	free(keys);
	OPENSSL_cleanse(old_key, sizeof(old_key));
	OPENSSL_cleanse(new_key, sizeof(new_key));
	vault__crypto_free(&c);
	return r;
}

/* Draws a random Luhn-valid token of len digits under prefix. */
static int draw_token(const char *prefix, size_t plen, unsigned len, char *out)
{
	uint8_t rnd[TSW_TOKEN_MAX_DIGITS];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -EIO;
	memcpy(out, prefix, plen);
	for (size_t i = plen; i + 1 < len; i++)
		out[i] = (char)('0' + rnd[i] % 10);
	out[len - 1] = tsw_luhn_check_digit(out, len - 1);
	out[len] = '\0';
	return 0;
}

int tsw_vault_provision(struct tsw_vault *v, const struct tsw_vault_row *row, const char *bin,
			size_t bin_len, unsigned token_len, struct tsw_token *ret_token)
{
	const struct bin_set *b = __atomic_load_n(&v->bins, __ATOMIC_ACQUIRE);
	struct tsw_vault_row w;
	uint8_t rec[REC_MAX_BYTES];
	uint8_t card_key[CARD_KEY_BYTES];
	const char *reason = NULL;
	struct pan_crypto c;
	uint64_t key = 0;
	MDB_txn *txn = NULL;
	int found = -1, r;

	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	for (unsigned i = 0; b && i < b->n; i++)
		if (!bin || (b->len[i] == bin_len && memcmp(b->prefix[i], bin, bin_len) == 0)) {
			found = (int)i;
			break;
		}
	if (found < 0)
		return -TSW_E_OUT_OF_RANGE;
	if (token_len < TSW_TOKEN_MIN_DIGITS || token_len > TSW_TOKEN_MAX_DIGITS ||
	    token_len < b->len[found] + 2u)
		return -TSW_E_BAD_INPUT;
	w = *row;
	vault__crypto_init(&c, v->keys);
	r = begin_write(v, &txn);
	if (r < 0)
		goto out_wipe;
	if (w.token.original_token[0] && w.pan_len == 0) {
		struct tsw_token o;
		uint64_t okey;
		size_t n = 0;

		r = get_token(v, &c, txn, w.token.original_token, strlen(w.token.original_token),
			      &okey, &o, w.pan, &n);
		if (r < 0)
			goto out_abort;
		w.pan_len = (uint8_t)n;
		if (!w.token.pan_expiry[0])
			memcpy(w.token.pan_expiry, o.pan_expiry, sizeof(o.pan_expiry));
	}
	for (unsigned tries = 0;; tries++) {
		MDB_val k = {.mv_size = sizeof(key), .mv_data = &key}, d;

		if (tries >= TSW_VAULT_PROVISION_TRIES_MAX) {
			r = -TSW_E_FULL;
			goto out_abort;
		}
		r = draw_token(b->prefix[found], b->len[found], token_len, w.token.token);
		if (r < 0)
			goto out_abort;
		vault__token_key(w.token.token, token_len, &key);
		if (mdb_get(txn, v->dbi_tokens, &k, &d) == MDB_NOTFOUND)
			break;
	}
	r = vault__row_check(v, &w, &reason);
	if (r == 0)
		r = vault__link_original(v, txn, &w.token, &reason);
	if (r == 0)
		r = vault__row_card(&c, &w, &w.token, card_key);
	if (r < 0)
		goto out_abort;
	w.token.atc_epoch = 0;
	r = vault__put_rec(v, &c, txn, key, &w.token, w.pan, w.pan_len, card_key, w.device_ref, 0,
			   rec, &reason);
	if (r < 0)
		goto out_abort;
	r = vault__txn_commit(v, txn);
	txn = NULL;
	if (r == 0)
		r = vault__rec_decode(rec, vault__rec_size((struct rec *)rec), key, ret_token);
out_abort:
	if (txn)
		mdb_txn_abort(txn);
out_wipe:
	OPENSSL_cleanse(&w, sizeof(w));
	vault__crypto_free(&c);
	return r;
}

int tsw_vault_stats(struct tsw_vault *v, struct tsw_vault_stats *ret_stats)
{
	struct tsw_vault_stats s;
	const struct bin_set *b = __atomic_load_n(&v->bins, __ATOMIC_ACQUIRE);
	struct pan_crypto c;
	MDB_cursor *cur = NULL;
	MDB_val k, d;
	MDB_envinfo info;
	MDB_stat st;
	MDB_txn *txn;
	int r, rc;

	memset(&s, 0, sizeof(s));
	r = mdb_to_errno(mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn));
	if (r < 0)
		return r;
	s.n_keys = __atomic_load_n(&v->keys->n_pan, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < s.n_keys; i++)
		s.key_ids[i] = v->keys->pan[i].id;
	r = vault__meta_get_u32(v, txn, "key:current", &s.current_key_id);
	if (r < 0)
		goto out;
	vault__crypto_init(&c, v->keys);
	r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_tokens, &cur));
	while (r == 0 && (rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) == 0) {
		const struct rec *rec = d.mv_data;
		uint64_t key;
		int slot;

		if (vault__rec_check(d.mv_data, d.mv_size) < 0) {
			r = -TSW_E_CORRUPT;
			break;
		}
		s.tokens++;
		memcpy(&key, k.mv_data, sizeof(key));
		if (rec->version == REC_VERSION_1)
			s.unauthenticated++;
		if (vault__rec_open(&c, d.mv_data, d.mv_size, key, vault__format1(v), NULL, 0) < 0)
			s.integrity_failures++;
		s.by_status[rec->status]++;
		if (rec->flags & REC_F_CARD_SUSPENDED)
			s.card_suspended_tokens++;
		slot = vault__keyring_slot(v->keys, rec->key_id);
		if (slot >= 0)
			s.by_key[slot]++;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	vault__crypto_free(&c);
	if (r < 0)
		goto out;
	r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_index, &cur));
	while (r == 0 && mdb_cursor_get(cur, &k, &d, MDB_NEXT_NODUP) == 0)
		s.cards++;
	mdb_cursor_close(cur);
	cur = NULL;
	r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_cards, &cur));
	while (r == 0 && mdb_cursor_get(cur, &k, &d, MDB_NEXT) == 0)
		if (d.mv_size && (*(const uint8_t *)d.mv_data & CARD_F_SUSPENDED))
			s.suspended_cards++;
	mdb_cursor_close(cur);
	if (r < 0)
		goto out;
	mdb_stat(txn, v->dbi_devices, &st);
	s.device_bindings = st.ms_entries;
	mdb_env_info(v->env, &info);
	mdb_env_stat(v->env, &st);
	s.map_used_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
	s.keys_locked = v->keys_locked;
	for (unsigned i = 0; b && i < b->n; i++)
		memcpy(s.bins[i], b->prefix[i], sizeof(s.bins[i]));
	s.n_bins = b ? b->n : 0;
	*ret_stats = s;
out:
	mdb_txn_abort(txn);
	return r;
}

/* Phase one of a new key: the key durable in the key file (temp, fsync,
 * rename, directory fsync) before the vault names it current, in the same
 * write transaction, so no record can be sealed under a key a crash could
 * lose. A key left in the file by a rekey killed between the two (newer
 * than the vault's current one, never registered) is taken instead of a
 * fresh one. */
static int new_key(struct tsw_vault *v, const struct tsw_vault_reseal_opts *o, uint32_t *ret_id)
{
	uint32_t current = 0, id = 0;
	MDB_txn *txn;
	int slot = -1, r;

	r = begin_write(v, &txn);
	if (r < 0)
		return r;
	r = vault__meta_get_u32(v, txn, "key:current", &current);
	if (r < 0)
		return commit_or_abort(v, txn, r);
	for (uint32_t i = 0; i < v->keys->n_pan; i++)
		if (v->keys->pan[i].id > current &&
		    vault__kcv_check(v, txn, v->keys->pan[i].id, v->keys->pan[i].key) == 1 &&
		    v->keys->pan[i].id > id) {
			id = v->keys->pan[i].id;
			slot = (int)i;
		}
	if (slot < 0) {
		r = vault__keyring_add_key(v->keys, v->key_file, &id);
		if (r < 0)
			return commit_or_abort(v, txn, r);
		slot = vault__keyring_slot(v->keys, id);
	} else {
		__atomic_store_n(&v->keys->current, (uint32_t)slot, __ATOMIC_RELEASE);
	}
	if (o->progress)
		o->progress(o->ctx, TSW_VAULT_STEP_KEY_FILE, 0);
	r = vault__kcv_register(v, txn, id, v->keys->pan[slot].key);
	if (r == 0)
		r = vault__meta_bump_gen(v, txn);
	r = commit_or_abort(v, txn, r);
	if (r < 0)
		return r;
	if (o->progress)
		o->progress(o->ctx, TSW_VAULT_STEP_KEY_CURRENT, 0);
	*ret_id = id;
	return 0;
}

/* Does the reseal want this record sealed again? */
static bool reseal_wanted(const struct rec *r, enum tsw_vault_reseal mode, uint32_t key_id)
{
	if (r->version != REC_VERSION)
		return true;
	return mode != TSW_VAULT_RESEAL_UPGRADE && le32toh(r->key_id) != key_id;
}

/* Re-seals one token record under the current key in place (the cursor
 * is on it); a record that fails authentication is counted, not fatal. */
static int reseal_one(struct tsw_vault *v, struct pan_crypto *c, MDB_cursor *cur,
		      const MDB_val *d, uint64_t key, uint64_t *sealed, uint64_t *failed)
{
	char pan[TSW_PAN_MAX_DIGITS];
	uint8_t buf[REC_MAX_BYTES];
	struct tsw_token t;
	size_t pan_len = 0, len = 0;
	int r;

	r = vault__read_rec(v, c, d, key, &t, pan, &pan_len);
	if (r == -TSW_E_INTEGRITY) {
		(*failed)++;
		return 0;
	}
	if (r == 0)
		r = vault__encode_sealed(c, &t, key, pan, pan_len, NULL, buf, &len);
	OPENSSL_cleanse(pan, sizeof(pan));
	if (r == 0) {
		MDB_val nd = {.mv_size = len, .mv_data = buf};
		MDB_val nk = {.mv_size = sizeof(key), .mv_data = &key};

		/* MDB_CURRENT; a version 2 record grows by its tail,
		 * and LMDB then deletes and inserts the node: the key
		 * must not point into the page it rewrites */
		r = mdb_to_errno(vault__cursor_put(v, cur, &nk, &nd, MDB_CURRENT));
		(*sealed)++;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return r;
}

/* Phase two: every wanted record sealed again under the current key,
 * chunk_rows per transaction. Each commit is durable, and no key is taken
 * out of the key file here, so a crash at any point leaves every record
 * readable (under its old key or the new one); running again finishes.
 * A record failing authentication is left as it is and counted. On a
 * format 1 vault the last chunk marks it format 2. */
static int reseal_records(struct tsw_vault *v, const struct tsw_vault_reseal_opts *o,
			  struct tsw_vault_reseal_result *res)
{
	unsigned chunk =
	    vault__chunk_rows(v, o->chunk_rows ? o->chunk_rows : TSW_VAULT_REKEY_CHUNK_ROWS);
	struct pan_crypto c;
	uint64_t next = 0;
	uint32_t id = 0;
	bool more = true;
	int r = 0;

	vault__crypto_init(&c, v->keys);
	vault__crypto_current_slot(&c, &id);
	res->key_id = id;
	while (more && r == 0) {
		MDB_cursor *cur = NULL;
		MDB_val k = {.mv_size = sizeof(next), .mv_data = &next}, d;
		MDB_txn *txn;
		uint64_t sealed = 0, failed = 0;
		unsigned n = 0;
		int rc;

		r = begin_write(v, &txn);
		if (r < 0)
			break;
		r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_tokens, &cur));
		rc = r == 0 ? mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE) : 0;
		for (; r == 0 && rc == 0 && n < chunk; rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
			uint64_t key;

			memcpy(&key, k.mv_data, sizeof(key));
			next = key + 1;
			if (vault__rec_check(d.mv_data, d.mv_size) < 0 ||
			    !reseal_wanted(d.mv_data, o->mode, id))
				continue;
			n++;
			r = reseal_one(v, &c, cur, &d, key, &sealed, &failed);
		}
		if (r == 0 && rc == MDB_NOTFOUND)
			more = false;
		else if (r == 0 && rc != 0)
			r = mdb_to_errno(rc);
		mdb_cursor_close(cur);
		if (r == 0 && !more && o->mode != TSW_VAULT_RESEAL_UPGRADE) {
			/* the key store's few records, with the last chunk */
			uint64_t ks = 0, kf = 0;

			r = vault__keystore_reseal(v, txn, &c, &ks, &kf);
			failed += kf;
		}
		if (r == 0 && !more && vault__format1(v)) {
			r = vault__meta_set_format(v, txn, VAULT_FORMAT);
			if (r == 0)
				r = vault__meta_bump_gen(v, txn);
		}
		r = commit_or_abort(v, txn, r);
		if (r < 0)
			break;
		if (!more && vault__format1(v))
			vault__set_format(v, VAULT_FORMAT);
		res->records += sealed;
		res->failed += failed;
		if (o->progress)
			o->progress(o->ctx, TSW_VAULT_STEP_CHUNK, res->records);
	}
	vault__crypto_free(&c);
	return r;
}

int tsw_vault_reseal(struct tsw_vault *v, const struct tsw_vault_reseal_opts *o,
		     struct tsw_vault_reseal_result *ret_result)
{
	struct tsw_vault_reseal_result res = {0};
	int r = 0;

	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	if ((unsigned)o->mode >= TSW_VAULT_RESEAL_MAX)
		return -EINVAL;
	if (o->mode == TSW_VAULT_RESEAL_NEW_KEY)
		r = new_key(v, o, &res.key_id);
	if (r == 0)
		r = reseal_records(v, o, &res);
	if (r < 0)
		return r;
	if (o->progress)
		o->progress(o->ctx, TSW_VAULT_STEP_DONE, res.records);
	if (ret_result)
		*ret_result = res;
	return 0;
}

int tsw_vault_rekey(struct tsw_vault *v, uint32_t *ret_key_id, uint64_t *ret_records)
{
	struct tsw_vault_reseal_opts o = {.mode = TSW_VAULT_RESEAL_NEW_KEY};
	struct tsw_vault_reseal_result res;
	int r = tsw_vault_reseal(v, &o, &res);

	if (r < 0)
		return r;
	if (ret_key_id)
		*ret_key_id = res.key_id;
	if (ret_records)
		*ret_records = res.records;
	return 0;
}

int tsw_vault_upgrade(struct tsw_vault *v, uint64_t *ret_records)
{
	struct tsw_vault_reseal_opts o = {.mode = TSW_VAULT_RESEAL_UPGRADE};
	struct tsw_vault_reseal_result res;
	int r = tsw_vault_reseal(v, &o, &res);

	if (r == 0 && ret_records)
		*ret_records = res.records;
	return r;
}

int tsw_vault_retire_key(struct tsw_vault *v, uint32_t id, uint64_t *ret_records)
{
	MDB_cursor *cur = NULL;
	uint32_t current = 0;
	uint64_t users = 0;
	MDB_val k, d;
	MDB_txn *txn;
	int r, rc;

	if (vault__keyring_slot(v->keys, id) < 0)
		return -TSW_E_NOT_FOUND;
	/* the write transaction holds the writer lock: no record can be
	 * sealed under id between the count and the key file's rewrite
	 * (new writes use the current key, which is never retired) */
	r = begin_write(v, &txn);
	if (r < 0)
		return r;
	r = vault__meta_get_u32(v, txn, "key:current", &current);
	if (r == 0 && current == id)
		r = -EBUSY;
	if (r == 0)
		r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_tokens, &cur));
	while (r == 0 && (rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) == 0)
		/* the stored key id, authenticated or not: an edited record
		 * keeps its key as well */
		if (d.mv_size >= sizeof(struct rec) &&
		    le32toh(((const struct rec *)d.mv_data)->key_id) == id)
			users++;
	mdb_cursor_close(cur);
	if (r == 0) {
		uint64_t keys = 0;

		r = vault__keystore_users(v, txn, id, &keys);
		users += keys;
	}
	if (r == 0 && users)
		r = -EBUSY;
	if (r == 0)
		r = vault__keyring_remove_key(v->keys, v->key_file, id);
	if (r == 0)
		r = vault__kcv_forget(v, txn, id);
	if (r == 0)
		r = vault__meta_bump_gen(v, txn);
	r = commit_or_abort(v, txn, r);
	if (ret_records)
		*ret_records = users;
	return r;
}

/* Index rekey, phase one: the new index key durable in the key file, then
 * (one transaction) the vault's "rebuild in progress" mark naming it, and
 * the other index pair made and emptied. Index keys that are neither the
 * live one nor the one of a rebuild (left by a crash after an earlier
 * switch) are taken out of the file first. A run after a crash resumes
 * the rebuild of the key already marked, from the start. */
static int index_begin(struct tsw_vault *v, const struct tsw_vault_reseal_opts *o,
		       struct index_state *ret_st, int *ret_new_slot)
{
	struct keyring *k = v->keys;
	struct index_state st;
	uint32_t p;
	MDB_txn *txn;
	int slot, r;

	r = begin_write(v, &txn);
	if (r < 0)
		return r;
	r = vault__index_state_get(v, txn, &st);
	for (uint32_t i = 0; r == 0 && i < k->n_hmac;) {
		uint32_t id = k->hmac[i].id;

		if (id == st.key_id || id == st.next_id) {
			i++;
			continue;
		}
		r = vault__index_kcv_forget(v, txn, id);
		if (r == 0)
			r = vault__keyring_remove_hmac(k, v->key_file, id);
	}
	if (r == 0 && !st.next_id)
		r = vault__keyring_add_hmac(k, v->key_file, &st.next_id);
	if (r < 0)
		return commit_or_abort(v, txn, r);
	slot = vault__keyring_hmac_slot(k, st.next_id);
	if (slot < 0 || vault__index_kcv_check(v, txn, st.next_id, k->hmac[slot].key) < 0)
		return commit_or_abort(v, txn, -TSW_E_BAD_KEY); /* the file lacks, or changed, it */
	if (o->progress)
		o->progress(o->ctx, TSW_VAULT_STEP_KEY_FILE, 0);
	p = 1 - st.db;
	r = vault__index_kcv_register(v, txn, st.next_id, k->hmac[slot].key);
	if (r == 0)
		r = vault__index_state_put(v, txn, &st);
	if (r == 0)
		r = vault__index_pair_open(v, txn, p);
	if (r == 0)
		r = mdb_to_errno(vault__drop(v, txn, v->pair_index[p]));
	if (r == 0)
		r = mdb_to_errno(vault__drop(v, txn, v->pair_cards[p]));
	if (r == 0)
		r = vault__meta_bump_gen(v, txn);
	r = commit_or_abort(v, txn, r);
	if (r < 0)
		return r;
	if (o->progress)
		o->progress(o->ctx, TSW_VAULT_STEP_KEY_CURRENT, 0);
	*ret_st = st;
	*ret_new_slot = slot;
	return 0;
}

/* One record's part of the rebuild: its entry in the new index, its
 * card's state copied over, and the record sealed again with the new
 * card id. */
static int index_one(struct tsw_vault *v, struct pan_crypto *c_old, struct pan_crypto *c_new,
		     MDB_txn *txn, MDB_cursor *cur, const MDB_val *d, uint64_t key,
		     uint32_t p, uint32_t live)
{
	uint8_t old_ck[CARD_KEY_BYTES], new_ck[CARD_KEY_BYTES], buf[REC_MAX_BYTES];
	char pan[TSW_PAN_MAX_DIGITS];
	struct tsw_token t;
	size_t pan_len = 0, len = 0;
	MDB_val ck = {.mv_size = CARD_KEY_BYTES, .mv_data = old_ck}, cd;
	MDB_val tk = {.mv_size = sizeof(key), .mv_data = &key};
	int r, rc;

	r = vault__read_rec(v, c_new, d, key, &t, pan, &pan_len);
	if (r == 0)
		r = vault__crypto_card_key(c_old, pan, pan_len, old_ck);
	if (r == 0)
		r = vault__crypto_card_key(c_new, pan, pan_len, new_ck);
	if (r < 0)
		goto out_wipe;
	rc = mdb_get(txn, v->pair_cards[live], &ck, &cd);
	ck.mv_data = new_ck;
	if (rc == 0)
		r = mdb_to_errno(vault__put(v, txn, v->pair_cards[p], &ck, &cd, 0));
	else if (rc != MDB_NOTFOUND)
		r = mdb_to_errno(rc);
	if (r == 0)
		r = mdb_to_errno(vault__put(v, txn, v->pair_index[p], &ck, &tk, 0));
	if (r < 0)
		goto out_wipe;
	t.card_id = card_id_of(new_ck);
	r = vault__encode_sealed(c_new, &t, key, pan, pan_len, NULL, buf, &len);
	if (r == 0) {
		MDB_val nd = {.mv_size = len, .mv_data = buf};

		/* tk, not the cursor's key: a version 2 record grows by its
		 * tail, and LMDB then rewrites the page that key points into */
		r = mdb_to_errno(vault__cursor_put(v, cur, &tk, &nd, MDB_CURRENT));
	}
out_wipe:
	OPENSSL_cleanse(pan, sizeof(pan));
	OPENSSL_cleanse(buf, sizeof(buf));
	OPENSSL_cleanse(old_ck, sizeof(old_ck));
	OPENSSL_cleanse(new_ck, sizeof(new_ck));
	return r;
}

/* Phase three: the switch to the new pair and key in one transaction,
 * then the old pair emptied and the old key taken out of the file (a
 * crash before that leaves an unused key and pair, cleaned by the next
 * index rekey). */
static int index_switch(struct tsw_vault *v, struct index_state st, int new_slot)
{
	uint32_t old_db = st.db, old_id = st.key_id;
	MDB_txn *txn;
	int r;

	r = begin_write(v, &txn);
	if (r < 0)
		return r;
	st.db = 1 - old_db;
	st.key_id = st.next_id;
	st.next_id = 0;
	r = vault__index_state_put(v, txn, &st);
	if (r == 0)
		r = vault__meta_bump_gen(v, txn);
	r = commit_or_abort(v, txn, r);
	if (r < 0)
		return r;
	v->index_db = st.db;
	v->index_key_id = st.key_id;
	v->dbi_index = v->pair_index[st.db];
	v->dbi_cards = v->pair_cards[st.db];
	v->keys->hmac_current = (uint32_t)new_slot;
	r = begin_write(v, &txn);
	if (r < 0)
		return r;
	r = mdb_to_errno(vault__drop(v, txn, v->pair_index[old_db]));
	if (r == 0)
		r = mdb_to_errno(vault__drop(v, txn, v->pair_cards[old_db]));
	if (r == 0)
		r = vault__index_kcv_forget(v, txn, old_id);
	if (r == 0)
		r = vault__keyring_remove_hmac(v->keys, v->key_file, old_id);
	return commit_or_abort(v, txn, r);
}

int tsw_vault_rekey_index(struct tsw_vault *v, const struct tsw_vault_reseal_opts *o,
			  struct tsw_vault_reseal_result *ret_result)
{
	unsigned chunk =
	    vault__chunk_rows(v, o->chunk_rows ? o->chunk_rows : TSW_VAULT_REKEY_CHUNK_ROWS);
	struct tsw_vault_reseal_result res = {0};
	struct pan_crypto c_old, c_new;
	struct index_state st;
	uint64_t next = 0;
	bool more = true;
	int new_slot = -1, r;

	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	r = index_begin(v, o, &st, &new_slot);
	if (r < 0)
		return r;
	vault__crypto_init(&c_old, v->keys);
	vault__crypto_init(&c_new, v->keys);
	c_new.hmac_slot = new_slot;
	while (more && r == 0) {
		MDB_cursor *cur = NULL;
		MDB_val k = {.mv_size = sizeof(next), .mv_data = &next}, d;
		uint64_t done = 0, failed = 0;
		MDB_txn *txn;
		unsigned n = 0;
		int rc;

		r = begin_write(v, &txn);
		if (r < 0)
			break;
		r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_tokens, &cur));
		rc = r == 0 ? mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE) : 0;
		for (; r == 0 && rc == 0 && n < chunk; rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
			uint64_t key;

			memcpy(&key, k.mv_data, sizeof(key));
			next = key + 1;
			n++;
			r = index_one(v, &c_old, &c_new, txn, cur, &d, key, 1 - st.db, st.db);
			if (r == -TSW_E_INTEGRITY || r == -TSW_E_CORRUPT) {
				failed++; /* not indexed: card verbs do not reach it */
				r = 0;
			} else if (r == 0) {
				done++;
			}
		}
		if (r == 0 && rc == MDB_NOTFOUND)
			more = false;
		else if (r == 0 && rc != 0)
			r = mdb_to_errno(rc);
		mdb_cursor_close(cur);
		r = commit_or_abort(v, txn, r);
		if (r < 0)
			break;
		res.records += done;
		res.failed += failed;
		if (o->progress)
			o->progress(o->ctx, TSW_VAULT_STEP_CHUNK, res.records);
	}
	vault__crypto_free(&c_old);
	vault__crypto_free(&c_new);
	if (r == 0)
		r = index_switch(v, st, new_slot);
	if (r < 0)
		return r;
	if (o->progress)
		o->progress(o->ctx, TSW_VAULT_STEP_DONE, res.records);
	res.key_id = st.next_id;
	if (ret_result)
		*ret_result = res;
	return 0;
}
