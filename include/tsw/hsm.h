/* Card cryptography: the switch's stand-in for a hardware security module.
 *
 * What it does: EMV application cryptogram (ARQC) verification and the
 * issuer's answer to it (ARPC), the e-commerce token cryptogram (TAVV,
 * DE48 tag 11) and ISO 9564 PIN block translation, with keys that never
 * leave it in the clear (only their check values do).
 * docs/hsm.md lists the algorithms and the vectors the tests check.
 *
 * Shape. Every operation goes through a backend (struct tsw_hsm_ops): the
 * software one here (tsw_hsm_soft_open(): OpenSSL 3, keys in locked
 * memory) and, later, one that drives a real HSM over PKCS#11. A backend
 * hands out three kinds of object:
 *
 *	struct tsw_hsm          one per process; owns the keys (and a cache
 *	                        of derived ICC master keys in the soft one)
 *	struct tsw_hsm_session  one per thread, like a PKCS#11 session: the
 *	                        cipher contexts an operation works in
 *	struct tsw_hsm_key      a key held by the backend: its bytes stay
 *	                        inside it; callers see kind, algorithm, KCV
 *
 * Threads: tsw_hsm_key_import(), tsw_hsm_key_free(), tsw_hsm_session_open()
 * and every operation may run on any number of threads at once, each
 * operation on a session that no other thread uses at the same time. A key
 * may be used by several sessions at once; it must not be freed while an
 * operation uses it. tsw_hsm_close() runs alone, after every session is
 * closed and every key freed.
 *
 * Errors (negative, tsw_strerror()): -TSW_E_BAD_INPUT for arguments out of
 * their domain (a key of the wrong kind or algorithm, non-digits in a PAN,
 * an unsupported CVN), -TSW_E_NOT_FOUND for a NULL key (no key configured
 * for that scope), -TSW_E_CRYPTOGRAM when a cryptogram does not verify,
 * -TSW_E_PIN_FORMAT / -TSW_E_PIN_PAN for PIN blocks, -TSW_E_FULL when the
 * backend holds as many keys as it can, -ENOMEM, -EIO when the cipher
 * library fails. No error carries a key, PIN or PAN. ret_ out-parameters
 * are untouched on failure.
 */
#ifndef TSW_HSM_H
#define TSW_HSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tsw_hsm_alg {
	TSW_HSM_TDES2,	/* 2-key triple DES, 16 bytes (K1 K2 K1) */
	TSW_HSM_TDES3,	/* 3-key triple DES, 24 bytes */
	TSW_HSM_AES128, /* 16 bytes */
	TSW_HSM_AES256, /* 32 bytes */
	TSW_HSM_ALG_MAX
};

enum tsw_hsm_kind {
	TSW_HSM_IMK_AC,	      /* issuer master key for application cryptograms */
	TSW_HSM_ZPK_ACQUIRER, /* zone PIN key shared with an acquirer */
	TSW_HSM_ZPK_ISSUER,   /* zone PIN key shared with an issuer */
	TSW_HSM_TAVV,	      /* token cryptogram key of a token range (AES) */
	TSW_HSM_ICC_MK,	      /* derived: a card's (token's) master key for AC */
	TSW_HSM_SESSION_KEY,  /* derived: one transaction's AC session key */
	TSW_HSM_KIND_MAX
};

#define TSW_HSM_KEY_BYTES_MAX 32u
/* Key check value: TDES encrypts 8 zero bytes and keeps 3 bytes; AES keeps
 * the leftmost 5 bytes of AES-CMAC over 16 zero bytes (ANSI X9.24-1:2017,
 * the CMAC method). Both as printed by tokvault: hex, upper case. */
#define TSW_HSM_KCV_BYTES_MAX 5u
#define TSW_HSM_PAN_DIGITS_MIN 12u /* shortest PAN/token the PIN blocks take */
#define TSW_HSM_PAN_DIGITS_MAX 19u
#define TSW_HSM_PIN_DIGITS_MIN 4u
#define TSW_HSM_PIN_DIGITS_MAX 12u
#define TSW_HSM_PIN_BLOCK_MAX 16u /* format 4; format 0 is 8 bytes */
#define TSW_HSM_IAD_MAX 32u	  /* 9F10 issuer application data, EMV maximum */
#define TSW_HSM_ARPC_DATA_MAX 16u /* tag 91 value: method 1 ARPC+ARC (10), method 2 up to 16 */
#define TSW_HSM_TAVV_HEX 20u	  /* DE48 tag 11: 4 hex counter, 16 hex MAC */
#define TSW_HSM_TAVV_MAC_BYTES 8u
#define TSW_HSM_TAVV_MERCHANT_MAX 15u /* DE42 */
/* Defaults of struct tsw_hsm_soft_config. */
#define TSW_HSM_MAX_KEYS_DEFAULT 1024u
#define TSW_HSM_ICC_CACHE_DEFAULT 65536u /* derived ICC master keys kept */

/* What a caller may know about a key. */
struct tsw_hsm_key_info {
	uint8_t kind;			    /* enum tsw_hsm_kind */
	uint8_t alg;			    /* enum tsw_hsm_alg */
	uint8_t kcv_len;		    /* 3 (TDES) or 5 (AES) */
	uint8_t kcv[TSW_HSM_KCV_BYTES_MAX]; /* see TSW_HSM_KCV_BYTES_MAX */
};

/* EMV cryptogram versions the switch verifies. */
enum tsw_hsm_cvn {
	TSW_HSM_CVN_VISA_10 = 10, /* ICC master key, CVR ends the data */
	TSW_HSM_CVN_MC_16 = 16,	  /* session key from ATC and UN */
	TSW_HSM_CVN_VISA_18 = 18, /* common session key, 9F10 ends the data */
	TSW_HSM_CVN_MC_20 = 20,	  /* common session key, CVR ends the data */
};

/* The inputs of one ARQC, as the card used them (tsw_hsm_de55_parse()
 * fills it from DE55). Numeric EMV data stays in its card form (BCD). */
struct tsw_hsm_arqc_input {
	uint8_t cvn;		 /* enum tsw_hsm_cvn */
	uint8_t arqc[8];	 /* 9F26 */
	uint8_t cid;		 /* 9F27 cryptogram information data */
	uint8_t amount[6];	 /* 9F02 */
	uint8_t amount_other[6]; /* 9F03 */
	uint8_t country[2];	 /* 9F1A terminal country code */
	uint8_t tvr[5];		 /* 95 */
	uint8_t currency[2];	 /* 5F2A */
	uint8_t date[3];	 /* 9A YYMMDD */
	uint8_t type;		 /* 9C transaction type */
	uint8_t un[4];		 /* 9F37 unpredictable number */
	uint8_t aip[2];		 /* 82 */
	uint8_t atc[2];		 /* 9F36 */
	uint8_t iad_len;	 /* 9F10 length */
	uint8_t iad[TSW_HSM_IAD_MAX];
	uint8_t cvr_len; /* 4 (Visa: with its length byte) or 6 (Mastercard) */
	uint8_t cvr[6];	 /* card verification results, from 9F10 */
	bool has_psn;	 /* 5F34 present */
	uint8_t psn;	 /* 5F34, BCD 00..99 */
};

/* The issuer's answer for tag 91. Method 1 (CVN 10, 16, 20) uses arc;
 * method 2 (CVN 18) uses csu and prop. */
struct tsw_hsm_arpc_params {
	uint8_t arc[2];	     /* authorization response code: DE39's two ASCII bytes */
	uint8_t csu[4];	     /* card status update */
	const uint8_t *prop; /* proprietary authentication data, may be NULL */
	size_t prop_len;     /* 0..8 */
};

/* ISO/IEC 9797-1 padding methods for tsw_hsm_retail_mac(). */
enum tsw_hsm_pad {
	TSW_HSM_PAD_1, /* zeros to the block size (none if already aligned) */
	TSW_HSM_PAD_2, /* 0x80, then zeros to the block size */
	TSW_HSM_PAD_MAX
};

/* The inputs of one token cryptogram (DE48 tag 11), as the request
 * carries them; docs/wire.md gives the MAC's layout. */
struct tsw_hsm_tavv_input {
	const char *token; /* digits, 1..19 */
	size_t token_len;
	const char *amount;   /* DE4: 12 digits */
	const char *currency; /* DE49: 3 digits, or NULL: "000" */
	const char *merchant; /* DE42 (may be NULL when merchant_len is 0) */
	size_t merchant_len;  /* 0..15; trailing spaces are trimmed here too */
	uint16_t counter;     /* the device's counter, from the value */
};

struct tsw_hsm;
struct tsw_hsm_session;
struct tsw_hsm_key;

/* The backend's table. Each public function below checks its arguments
 * that do not need the key bytes (NULL keys, lengths, digits) and then
 * calls the backend's entry; a backend sees only valid arguments.
 * Entries a backend cannot offer may be NULL: the call returns -ENOTSUP. */
struct tsw_hsm_ops {
	const char *name;
	void (*close)(struct tsw_hsm *h);
	int (*key_import)(struct tsw_hsm *h, enum tsw_hsm_kind kind, enum tsw_hsm_alg alg,
			  const uint8_t *bytes, size_t len, struct tsw_hsm_key **ret_key);
	void (*key_free)(struct tsw_hsm_key *k);
	/* optional: key_free of n keys of this backend at once */
	void (*keys_free)(struct tsw_hsm_key *const *keys, size_t n);
	int (*session_open)(struct tsw_hsm *h, struct tsw_hsm_session **ret_s);
	void (*session_close)(struct tsw_hsm_session *s);
	int (*derive_icc_mk)(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk,
			     const char *pan, size_t pan_len, uint8_t psn,
			     struct tsw_hsm_key **ret_key);
	int (*derive_session_key)(struct tsw_hsm_session *s, const struct tsw_hsm_key *icc_mk,
				  const struct tsw_hsm_arqc_input *in,
				  struct tsw_hsm_key **ret_key);
	int (*arqc_verify)(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk,
			   const char *pan, size_t pan_len, uint8_t psn,
			   const struct tsw_hsm_arqc_input *in);
	int (*arqc_generate)(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk,
			     const char *pan, size_t pan_len, uint8_t psn,
			     const struct tsw_hsm_arqc_input *in, uint8_t ret_arqc[8]);
	int (*arpc)(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk, const char *pan,
		    size_t pan_len, uint8_t psn, const struct tsw_hsm_arqc_input *in,
		    const struct tsw_hsm_arpc_params *p, uint8_t *out, size_t *ret_len);
	int (*retail_mac)(struct tsw_hsm_session *s, const struct tsw_hsm_key *k,
			  enum tsw_hsm_pad pad, const uint8_t *data, size_t len,
			  uint8_t ret_mac[8]);
	int (*pin_form)(struct tsw_hsm_session *s, const struct tsw_hsm_key *k, const char *pan,
			size_t pan_len, const char *pin, size_t pin_len, uint8_t *out);
	int (*pin_verify)(struct tsw_hsm_session *s, const struct tsw_hsm_key *k, const char *pan,
			  size_t pan_len, const uint8_t *block, const char *pin, size_t pin_len);
	int (*pin_translate)(struct tsw_hsm_session *s, const struct tsw_hsm_key *src,
			     const char *src_pan, size_t src_pan_len, const struct tsw_hsm_key *dst,
			     const char *dst_pan, size_t dst_pan_len, const uint8_t *in,
			     uint8_t *out);
	int (*tavv_generate)(struct tsw_hsm_session *s, const struct tsw_hsm_key *k,
			     const struct tsw_hsm_tavv_input *in, uint8_t ret_mac[8]);
	int (*tavv_verify)(struct tsw_hsm_session *s, const struct tsw_hsm_key *k,
			   const struct tsw_hsm_tavv_input *in, const uint8_t mac[8]);
};

/* Every backend's objects begin with these (a backend's own structs embed
 * them first), so the public functions find the table. */
struct tsw_hsm {
	const struct tsw_hsm_ops *ops;
};
struct tsw_hsm_session {
	struct tsw_hsm *hsm;
};
struct tsw_hsm_key {
	struct tsw_hsm *hsm;
	struct tsw_hsm_key_info info;
};

/* ---- the software backend ---- */

struct tsw_hsm_soft_config {
	uint32_t max_keys;	    /* keys held at once (imported and derived,
				     * including ones a caller derives and
				     * frees); 0: TSW_HSM_MAX_KEYS_DEFAULT */
	uint32_t icc_cache_entries; /* derived ICC master keys cached for
				     * tsw_hsm_arqc_verify() (284 bytes of
				     * locked memory each); 0: default;
				     * UINT32_MAX: no cache (derive every time) */
};

/* Counters of the software backend (all since open). */
struct tsw_hsm_soft_stats {
	uint64_t keys_in_use; /* now */
	uint64_t key_full;    /* imports/derivations refused: max_keys */
	uint64_t icc_cache_hits;
	uint64_t icc_cache_misses; /* derived and stored (evicting a slot's key) */
	uint64_t icc_cache_used;   /* entries holding a key now (freeing an IMK
				    * wipes those derived under it) */
	bool locked;		   /* the key memory is mlock()ed (false when
				    * RLIMIT_MEMLOCK refused: keys still work,
				    * may be swapped) */
};

/* Opens the software backend: key memory (max_keys slots and the ICC
 * cache) mapped at once, excluded from core dumps (MADV_DONTDUMP) and
 * locked (mlock; when the limit refuses, stats.locked says so). cfg may
 * be NULL (defaults). Returns 0, -TSW_E_BAD_INPUT (max_keys above
 * 1 << 20 or a cache above 1 << 24 entries), -ENOMEM, -EIO (OpenSSL lacks
 * AES or CMAC). */
int tsw_hsm_soft_open(const struct tsw_hsm_soft_config *cfg, struct tsw_hsm **ret_hsm);

/* Fills *ret with h's counters; h must be a software backend (returns
 * -TSW_E_BAD_INPUT otherwise). Safe from any thread. */
int tsw_hsm_soft_stats(const struct tsw_hsm *h, struct tsw_hsm_soft_stats *ret);

/* ---- every backend ---- */

/* Closes h and wipes every key it holds (NULL is fine). */
void tsw_hsm_close(struct tsw_hsm *h);

/* Imports a clear key (for example read by tokvault from the vault) of
 * kind and alg; len must be the algorithm's (16, 24, 16, 32). TSW_HSM_IMK_AC
 * takes TDES2 only, TSW_HSM_TAVV AES-128 or AES-256 only, a zone PIN key
 * any algorithm; the derived kinds are not imported. A TDES key's
 * parity is not checked (DES ignores it). The caller wipes bytes after.
 * Returns 0, -TSW_E_BAD_INPUT (len, kind or alg), -TSW_E_FULL, -EIO.
 * The key lives until tsw_hsm_key_free(). */
int tsw_hsm_key_import(struct tsw_hsm *h, enum tsw_hsm_kind kind, enum tsw_hsm_alg alg,
		       const uint8_t *bytes, size_t len, struct tsw_hsm_key **ret_key);

/* Wipes and frees k (NULL is fine). */
void tsw_hsm_key_free(struct tsw_hsm_key *k);
/* tsw_hsm_key_free() of keys[0..n) (NULLs are fine), the keys of one
 * HSM: a reload frees a whole set, and the software backend then wipes
 * what the set's IMKs left in its ICC key cache in one pass, not one per
 * IMK. */
void tsw_hsm_keys_free(struct tsw_hsm_key *const *keys, size_t n);

/* Kind, algorithm and check value of k; valid as long as k. */
const struct tsw_hsm_key_info *tsw_hsm_key_info(const struct tsw_hsm_key *k);

/* A session for the calling thread. Returns 0, -ENOMEM or -EIO. */
int tsw_hsm_session_open(struct tsw_hsm *h, struct tsw_hsm_session **ret_s);
/* Closes s (NULL is fine); its contexts are wiped. */
void tsw_hsm_session_close(struct tsw_hsm_session *s);

/* EMV option A (EMV 4.3 Book 2, A1.4.1): the ICC master key for AC of the
 * card whose application PAN is pan (digits, 1..19: a tokenized device
 * carries the token as its PAN) with sequence number psn (BCD 00..99),
 * derived under imk (TSW_HSM_IMK_AC, TDES2). *ret_key is a new key of kind
 * TSW_HSM_ICC_MK: free it. Returns 0, -TSW_E_NOT_FOUND (imk NULL),
 * -TSW_E_BAD_INPUT, -TSW_E_FULL, -EIO. */
int tsw_hsm_derive_icc_mk(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk, const char *pan,
			  size_t pan_len, uint8_t psn, struct tsw_hsm_key **ret_key);

/* The AC session key of in->cvn from icc_mk (TSW_HSM_ICC_MK): CVN 18 and
 * 20 the EMV common session key from the ATC (Book 2 A1.3), CVN 16
 * Mastercard's from the ATC and the unpredictable number; CVN 10 has none
 * (-TSW_E_BAD_INPUT). A new key of kind TSW_HSM_SESSION_KEY: free it. */
int tsw_hsm_derive_session_key(struct tsw_hsm_session *s, const struct tsw_hsm_key *icc_mk,
			       const struct tsw_hsm_arqc_input *in, struct tsw_hsm_key **ret_key);

/* ISO/IEC 9797-1 MAC algorithm 3 (single-DES CBC under K1, the last block
 * also decrypted under K2 and encrypted under K1) with padding pad, under
 * k (TDES2, a cryptogram key: IMK, ICC MK or session key; a zone PIN key
 * is -TSW_E_BAD_INPUT). Empty data: one padded block. */
int tsw_hsm_retail_mac(struct tsw_hsm_session *s, const struct tsw_hsm_key *k, enum tsw_hsm_pad pad,
		       const uint8_t *data, size_t len, uint8_t ret_mac[8]);

/* Verifies in->arqc for the card pan/psn (psn: in->psn when in->has_psn,
 * else record_psn) under imk: derives (or finds in the cache) the ICC
 * master key, the CVN's session key, and the MAC over the CVN's data:
 *	9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36, then
 *	CVN 10: CVR (4 bytes), padding 1;   CVN 18: all of 9F10, padding 2;
 *	CVN 16, 20: CVR (6 bytes), padding 2.
 * Returns 0 (it verifies), -TSW_E_CRYPTOGRAM (it does not), -TSW_E_NOT_FOUND
 * (imk NULL), -TSW_E_BAD_INPUT (CVN, digits, psn not BCD), -EIO. Compares
 * in constant time. The ATC replay check is the caller's (the state). */
int tsw_hsm_arqc_verify(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk, const char *pan,
			size_t pan_len, uint8_t record_psn, const struct tsw_hsm_arqc_input *in);

/* The ARQC the card would compute (same inputs; in->arqc ignored), for
 * test tools that play the card (tokbench). Same errors. */
int tsw_hsm_arqc_generate(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk, const char *pan,
			  size_t pan_len, uint8_t record_psn, const struct tsw_hsm_arqc_input *in,
			  uint8_t ret_arqc[8]);

/* The value of tag 91 (issuer authentication data) for an ARQC that
 * verified: method 1 (CVN 10, 16, 20): ARPC = TDES(ARQC xor ARC||00..00)
 * under the ICC master key (CVN 10, 16) or the session key (CVN 20),
 * followed by the ARC: 10 bytes; method 2 (CVN 18): the first 4 bytes of
 * the retail MAC (padding 2) over ARQC || CSU || prop under the session
 * key, then CSU and prop: 8 + prop_len bytes. out holds
 * TSW_HSM_ARPC_DATA_MAX bytes. Returns 0 with *ret_len set, or the errors
 * of tsw_hsm_arqc_verify() (-TSW_E_BAD_INPUT also for prop_len > 8). */
int tsw_hsm_arpc(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk, const char *pan,
		 size_t pan_len, uint8_t record_psn, const struct tsw_hsm_arqc_input *in,
		 const struct tsw_hsm_arpc_params *p, uint8_t out[TSW_HSM_ARPC_DATA_MAX],
		 size_t *ret_len);

/* Extracts the ARQC inputs from DE55 (BER-TLV, top level) for a card of
 * cvn: every tag of struct tsw_hsm_arqc_input is required except 5F34,
 * each with its EMV length; the CVR comes from 9F10 by the scheme's
 * layout (Visa CVN 10/18: 9F10 = length 06, DKI, CVN, 4-byte CVR, ...;
 * Mastercard CVN 16/20: DKI, CVN, 6-byte CVR, ...), whose CVN byte must
 * be cvn. Returns 0, -TSW_E_BAD_TLV (DE55 is not BER-TLV), -TSW_E_NOT_FOUND
 * (a required tag is absent), -TSW_E_BAD_INPUT (a tag of the wrong
 * length, a 9F10 of another layout or CVN, an unsupported cvn). On every
 * error but -TSW_E_BAD_TLV, *ret_tag (when not NULL) names the tag
 * (0x9F10, ...); it is set to 0 for -TSW_E_BAD_TLV and left alone on
 * success. A tag of the ARQC present twice is -TSW_E_BAD_INPUT (naming
 * it): the switch would verify one value and the issuer might read the
 * other. Pure: no key, no
 * session. */
int tsw_hsm_de55_parse(const uint8_t *de55, size_t len, unsigned cvn,
		       struct tsw_hsm_arqc_input *ret_in, uint32_t *ret_tag);

/* The inverse, for test tools that play the card (tokbench, tests):
 * every tag of in as DE55 BER-TLV into out (cap bytes): the fixed-length
 * tags, 9F10 of in->iad_len bytes (in->iad, whose layout names the CVN;
 * cvn and cvr are not read), 5F34 when in->has_psn. Returns the length,
 * -TSW_E_BAD_INPUT (iad_len 0 or above TSW_HSM_IAD_MAX) or
 * -TSW_E_NO_SPACE. tsw_hsm_de55_parse() of the result gives in back. */
int tsw_hsm_de55_build(const struct tsw_hsm_arqc_input *in, uint8_t *out, size_t cap);

/* ---- PIN blocks (ISO 9564-1) ----
 * The key's algorithm selects the format: a TDES zone PIN key format 0
 * (8 bytes), an AES one format 4 (16 bytes, ISO 9564-1:2017). pan is the
 * account number the block is bound to (digits, 12..19; format 0 uses its
 * 12 rightmost digits before the check digit, format 4 all of it).
 * Errors: -TSW_E_NOT_FOUND (key NULL), -TSW_E_BAD_INPUT (digits, lengths,
 * a key that is not a ZPK), -TSW_E_PIN_FORMAT (the block does not decrypt
 * to a well-formed block of its format), -TSW_E_PIN_PAN (format 0 only:
 * its PAN-independent first half is well formed and the rest is not: it
 * was formed with another account number; format 4 cannot tell that apart
 * from a wrong key and says -TSW_E_PIN_FORMAT). */

/* Forms the block for pin (4..12 digits) bound to pan under k into out
 * (8 or 16 bytes by k's algorithm; format 4 fills with fresh random). For
 * test tools that play the terminal. */
int tsw_hsm_pin_form(struct tsw_hsm_session *s, const struct tsw_hsm_key *k, const char *pan,
		     size_t pan_len, const char *pin, size_t pin_len,
		     uint8_t out[TSW_HSM_PIN_BLOCK_MAX]);

/* Returns 0 when block (under k, bound to pan) holds pin, -TSW_E_PIN_FORMAT
 * when it holds another PIN or is malformed, or the errors above. For test
 * tools that play the issuer (issuer-sim). Compares in constant time. */
int tsw_hsm_pin_verify(struct tsw_hsm_session *s, const struct tsw_hsm_key *k, const char *pan,
		       size_t pan_len, const uint8_t *block, const char *pin, size_t pin_len);

/* Translates block in (under src, bound to src_pan) into out (under dst,
 * bound to dst_pan): the acquirer's block formed with the token becomes
 * the issuer's formed with the PAN. src and dst must be of one family
 * (both TDES: format 0 stays 0; both AES: format 4 stays 4, with a fresh
 * random fill), else -TSW_E_BAD_INPUT. The clear PIN exists only in one
 * stack buffer of the backend, wiped before return on every path. out is
 * written only on success and may be in. */
int tsw_hsm_pin_translate(struct tsw_hsm_session *s, const struct tsw_hsm_key *src,
			  const char *src_pan, size_t src_pan_len, const struct tsw_hsm_key *dst,
			  const char *dst_pan, size_t dst_pan_len, const uint8_t *in,
			  uint8_t out[TSW_HSM_PIN_BLOCK_MAX]);

/* Bytes of a PIN block under k: 8 (TDES) or 16 (AES). */
size_t tsw_hsm_pin_block_len(const struct tsw_hsm_key *k);

/* ---- the token cryptogram (DE48 tag 11, docs/wire.md) ----
 * The value is 20 hex digits: a 16-bit counter (4 hex, big endian) and the
 * first 8 bytes of AES-CMAC under the token range's key (TSW_HSM_TAVV,
 * AES-128 or AES-256) over
 *	"TSWTAVV1" || counter (2 bytes, big endian) || token length (1 byte)
 *	|| token || DE4 (12 digits) || DE49 (3 digits, "000" when absent)
 *	|| DE42 length after trimming trailing spaces (1 byte) || DE42 trimmed.
 * The counter's replay check is the caller's (the state, as for the ATC).
 * Errors: -TSW_E_NOT_FOUND (k NULL), -TSW_E_BAD_INPUT (k not a TAVV key,
 * a token, amount or currency that is not digits of its length, a DE42
 * longer than 15), -EIO. */

/* Splits the value hex[0..len) (TSW_HSM_TAVV_HEX hex digits, either case)
 * into its counter and MAC. Returns 0 or -TSW_E_BAD_INPUT (another length,
 * a character that is not hex). Pure: no key, no session. */
int tsw_hsm_tavv_parse(const char *hex, size_t len, uint16_t *ret_counter,
		       uint8_t ret_mac[TSW_HSM_TAVV_MAC_BYTES]);

/* The MAC of in under k, for test tools that play the device (tokbench). */
int tsw_hsm_tavv_generate(struct tsw_hsm_session *s, const struct tsw_hsm_key *k,
			  const struct tsw_hsm_tavv_input *in,
			  uint8_t ret_mac[TSW_HSM_TAVV_MAC_BYTES]);

/* Returns 0 when mac is the MAC of in under k, -TSW_E_CRYPTOGRAM when it
 * is not (compared in constant time), or the errors above. */
int tsw_hsm_tavv_verify(struct tsw_hsm_session *s, const struct tsw_hsm_key *k,
			const struct tsw_hsm_tavv_input *in,
			const uint8_t mac[TSW_HSM_TAVV_MAC_BYTES]);

#endif
