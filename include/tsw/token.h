/* The token record as the switch sees it after a vault lookup: the
 * decoded form of a vault record (the on-disk layout is the vault's
 * business, src/vault/record.c). This header declares data only, no
 * functions: the contracts below are those of the struct.
 *
 * Lifetime. Plain, caller-owned data with no pointers in it (none into
 * the LMDB map): tsw_vault_lookup() and tsw_vault_peek() copy the record
 * into a struct the caller provides, and it stays valid, unchanged, after
 * the reader is reset or renewed and after the vault is closed, until the
 * caller overwrites it. It may be copied by assignment. A later change of
 * the record in the vault (suspend, delete, a new use count) is not seen
 * by a copy: look the token up again.
 *
 * Threads. No shared state: a struct tsw_token belongs to whoever holds
 * it; any thread may read one that no thread is writing (a worker fills
 * its own on its own thread).
 *
 * What a successful lookup guarantees (the vault refuses a record that
 * breaks it with -TSW_E_CORRUPT): token_len is
 * TSW_TOKEN_MIN_DIGITS..TSW_TOKEN_MAX_DIGITS, status below
 * TSW_TOKEN_STATUS_MAX, n_merchants at most TSW_TOKEN_MERCHANTS_MAX,
 * sealed_len at most TSW_SEALED_PAN_MAX, and every char array
 * (merchants[0..n_merchants) included) is NUL-terminated. merchants[]
 * past n_merchants is not cleared by a lookup: never read it. Nothing
 * here is checked for meaning (an expiry of "9913"): that is
 * tsw_authz_decide()'s job. As input of the vault's write side (struct
 * tsw_vault_row, tsw/vault.h) the caller fills it and the vault refuses
 * what it cannot store with -TSW_E_BAD_INPUT.
 *
 * Secrets. The PAN is not here: it stays encrypted in sealed_pan until
 * tsw_vault_decrypt_pan() writes it into a caller buffer right before the
 * issuer leg is encoded (the caller wipes that buffer). token is the
 * token's own digits: mask it (tsw_mask_pan()) before it goes into a log
 * line, an error string or a metric label.
 */
#ifndef TSW_TOKEN_H
#define TSW_TOKEN_H

#include <stdbool.h>
#include <stdint.h>

#define TSW_TOKEN_MIN_DIGITS 13
#define TSW_TOKEN_MAX_DIGITS 19
#define TSW_PAN_MAX_DIGITS 19
#define TSW_TRID_LEN 11
#define TSW_PAR_LEN 29
#define TSW_TOKEN_REF_MAX 32
#define TSW_MERCHANT_ID_LEN 15 /* DE42 */
#define TSW_ACQUIRER_ID_MAX 11 /* DE32 */
#define TSW_TOKEN_MERCHANTS_MAX 8
#define TSW_DEVICE_REF_MAX 48
/* AES-256-GCM sealed PAN: 12-byte nonce, ciphertext (PAN digits), 16-byte tag */
#define TSW_SEALED_PAN_MAX (12 + TSW_PAN_MAX_DIGITS + 16)

enum tsw_token_status {
	TSW_TOKEN_ACTIVE,
	TSW_TOKEN_SUSPENDED,
	TSW_TOKEN_DELETED,
	TSW_TOKEN_STATUS_MAX
};

/* Presentment modes, as bits in tsw_token.pos_modes (0 means all). */
enum tsw_pos_mode {
	TSW_POS_CONTACTLESS,
	TSW_POS_CHIP,
	TSW_POS_ECOMMERCE,
	TSW_POS_COF,
	TSW_POS_MANUAL,
	TSW_POS_MAGSTRIPE,
	TSW_POS_MODE_MAX
};

struct tsw_token_merchant {
	char merchant_id[TSW_MERCHANT_ID_LEN + 1]; /* DE42, space-padded as on the wire */
	char acquirer_id[TSW_ACQUIRER_ID_MAX + 1]; /* DE32, "" for any */
	char mcc[5];				   /* DE18, "" for any */
};

struct tsw_token {
	char token[TSW_TOKEN_MAX_DIGITS + 1];
	uint8_t token_len;
	uint8_t status;		 /* enum tsw_token_status */
	uint8_t card_suspended;	 /* the card behind it is suspended */
	uint8_t assurance_level; /* 0..99 */
	char token_expiry[5];	 /* YYMM */
	char pan_expiry[5];	 /* YYMM */
	char trid[TSW_TRID_LEN + 1];
	char token_ref[TSW_TOKEN_REF_MAX + 1];
	char par[TSW_PAR_LEN + 1];
	/* domain restriction controls */
	uint32_t pos_modes;  /* bit (1u << enum tsw_pos_mode); 0: any */
	uint8_t n_merchants; /* 0: any merchant */
	struct tsw_token_merchant merchants[TSW_TOKEN_MERCHANTS_MAX];
	uint64_t amount_limit; /* minor units; 0: none */
	char currency[4];      /* ISO 4217 numeric, "" for any */
	uint32_t max_uses;     /* 0: unlimited */
	uint32_t valid_from;   /* unix seconds; 0: none */
	uint32_t valid_until;  /* unix seconds; 0: none */
	uint8_t device_required;
	/* token-for-token: the original token and its data ("" when none) */
	char original_token[TSW_TOKEN_MAX_DIGITS + 1];
	char original_trid[TSW_TRID_LEN + 1];
	char original_token_ref[TSW_TOKEN_REF_MAX + 1];
	uint8_t original_assurance_level;
	/* key id of the encrypted PAN, and a stable id of the card (the first
	 * 8 bytes of the PAN's HMAC) for card-level state; never the PAN */
	uint32_t key_id;
	uint64_t card_id;
	/* the encrypted PAN as stored (opaque; only tsw_vault_decrypt_pan()
	 * reads it) */
	uint8_t sealed_pan[TSW_SEALED_PAN_MAX];
	uint8_t sealed_len;
	/* bumped by every re-personalization: the switch's state keeps
	 * (atc_epoch, last ATC) and treats a higher epoch here as "ATC reset
	 * to 0" */
	uint32_t atc_epoch;
	/* card cryptography: the EMV cryptogram version a chip or contactless
	 * request must carry an ARQC of (0: none required; 10, 16, 18, 20:
	 * enum tsw_hsm_cvn) and the PAN sequence number the device was
	 * personalized with (0..99; DE55's 5F34, when present, wins) */
	uint8_t cvn;
	uint8_t psn;
	/* the layout the record was read from (the vault's business:
	 * tsw_vault_decrypt_pan() authenticates it as stored; 0 for a record
	 * not read from the vault) */
	uint8_t rec_version;
};

/* Values of tsw_token.cvn (besides 0) and the largest PSN. */
#define TSW_TOKEN_CVN_VALID(c) ((c) == 0 || (c) == 10 || (c) == 16 || (c) == 18 || (c) == 20)
#define TSW_TOKEN_PSN_MAX 99

#endif
