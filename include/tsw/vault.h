/* The token vault: one LMDB environment of token records with encrypted
 * PANs (AES-256-GCM, token as associated data), a PAN -> tokens index keyed
 * by HMAC-SHA-256, device bindings, and token BIN ranges as metadata.
 *
 * The switch opens it read-only; tokvault writes it while the switch runs.
 * Each worker uses its own reader (one reusable LMDB read transaction and
 * one cipher context).
 */
#ifndef TSW_VAULT_H
#define TSW_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tsw/token.h"

struct tsw_vault;
struct tsw_vault_reader;

enum {
	TSW_VAULT_RDONLY = 1u << 0,
	TSW_VAULT_CREATE = 1u << 1,
	/* tokvault only: opens a format 1 vault (records written before they
	 * were authenticated) to upgrade or administer it; without it such a
	 * vault is -TSW_E_NEEDS_UPGRADE */
	TSW_VAULT_FORMAT1_OK = 1u << 2,
};

/* Limits of the vault (named so tools and tests can use them). */
#define TSW_VAULT_MAP_SIZE_BYTES (64ull << 30) /* LMDB map: address space, not disk */
#define TSW_VAULT_KEYS_MAX 16		       /* PAN key ids in one key file */
#define TSW_VAULT_INDEX_KEYS_MAX 4	       /* index (HMAC) keys in one key file */
#define TSW_VAULT_BINS_MAX 64		       /* token BIN ranges */
#define TSW_VAULT_BIN_MIN_DIGITS 1
#define TSW_VAULT_BIN_MAX_DIGITS 12
#define TSW_VAULT_CHUNK_ROWS_DEFAULT 50000 /* rows per import transaction */
/* the largest chunk: a bulk write stages two chunks (~350 bytes a row) */
#define TSW_VAULT_CHUNK_ROWS_MAX 1000000
#define TSW_VAULT_IMPORT_RATE_MAX 100000000ull /* rows a second; 0 is unlimited */
/* Memory a bulk write sorts in (about 400 bytes a token without
 * merchants: the default holds ~10 M tokens; a quarter of the machine's
 * memory when that is less): an import that fits is written in one sorted
 * pass (appends into an empty vault), a bigger one in several passes of
 * this size. */
#define TSW_VAULT_SORT_MEM_DEFAULT_BYTES (4ull << 30)
#define TSW_VAULT_SORT_MEM_MIN_BYTES (1ull << 20)
#define TSW_VAULT_SORT_MEM_MAX_BYTES (256ull << 30)
#define TSW_VAULT_REKEY_CHUNK_ROWS 10000   /* records re-encrypted per transaction */
#define TSW_VAULT_DEVICES_PER_TOKEN_MAX 16 /* bound device refs per token */
#define TSW_VAULT_PROVISION_TRIES_MAX 1000 /* random draws before -TSW_E_FULL */
#define TSW_PAN_MIN_DIGITS 12

/* Checks what tsw_vault_open checks of ownership and mode, and says
 * which path is wrong: dir (a directory no group or other user may
 * write), key_file (no group or other access), dir/data.mdb and
 * dir/lock.mdb (no group or other write); each owned by this user or
 * root. Paths that do not exist are skipped (tsw_vault_open reports
 * them). Returns 0, or the first problem (-TSW_E_NOT_OWNER,
 * -TSW_E_TOO_OPEN, -ENOTDIR, -EINVAL: not a regular file, -errno of stat)
 * with a line in why naming the path, what is wrong and the fix (cap
 * bytes, TSW_HARDEN_WHY_MAX is enough; why may be NULL). */
int tsw_vault_check_files(const char *dir, const char *key_file, char *why, size_t cap);

/* Opens the vault in dir with keys from key_file (mode 0600 or stricter,
 * owned by this user or root, else -TSW_E_BAD_KEY). Returns 0,
 * -TSW_E_BAD_KEY, -TSW_E_VERSION, -TSW_E_CORRUPT, -TSW_E_NOT_OWNER or
 * -TSW_E_TOO_OPEN (dir, data.mdb or lock.mdb owned by another user, or
 * writable by group or others: tsw_vault_check_files says which),
 * -ENOENT, or another -errno.
 *
 * flags: TSW_VAULT_RDONLY for the switch (every write function then
 * returns -EROFS); TSW_VAULT_CREATE creates dir (0700) and the vault when
 * absent, and key_file (mode 0600, fresh random keys) when absent and the
 * vault is new. Without CREATE a dir without a vault is -ENOENT. A key
 * file that is missing, malformed, too open, does not match the vault's
 * key check values or lacks the vault's current PAN key is
 * -TSW_E_BAD_KEY; a dir whose files are not an LMDB environment, or an
 * environment without vault metadata (another program's), is
 * -TSW_E_CORRUPT and is never written; a format newer than this build is
 * -TSW_E_VERSION; a format 1 vault (records not authenticated) is
 * -TSW_E_NEEDS_UPGRADE unless flags has TSW_VAULT_FORMAT1_OK. Keys live
 * in locked memory excluded from core dumps (mlock failing under
 * RLIMIT_MEMLOCK is tolerated and reported by tsw_vault_stats). *ret_vault is valid until
 * tsw_vault_close(); it may be shared by threads (readers are per thread). */
int tsw_vault_open(const char *dir, const char *key_file, unsigned flags,
		   struct tsw_vault **ret_vault);
/* Closes the environment and wipes the keys. Readers and batches must be
 * closed/finished first. NULL is a no-op. */
void tsw_vault_close(struct tsw_vault *v);

/* True when token (digits, len) lies in one of the vault's token BIN
 * ranges. Lock-free, any thread; reads metadata cached at open and
 * refreshed by tsw_vault_reader_renew when it changed. */
bool tsw_vault_in_token_range(const struct tsw_vault *v, const char *token, size_t len);

/* A worker's reader: one LMDB read transaction (MDB_NOTLS: usable from
 * any one thread at a time) and one cipher context per key. Starts reset.
 * Returns 0, -ENOMEM, -TSW_E_FULL (LMDB reader slots), -errno. Close
 * before tsw_vault_close(); NULL is a no-op for close. */
int tsw_vault_reader_open(struct tsw_vault *v, struct tsw_vault_reader **ret_reader);
void tsw_vault_reader_close(struct tsw_vault_reader *r);
/* Renew once per loop iteration: the reader then sees every change
 * committed so far (by any process) until the next renew/reset. When the
 * vault's metadata changed (token ranges, a rekey) it also refreshes the
 * cached ranges and loads new keys from the key file (rare, takes a
 * mutex). Returns 0, -TSW_E_FULL, -TSW_E_CORRUPT, -errno; after an error
 * the reader is reset. Reset before waiting, so the writer can reuse
 * pages; lookups on a reset reader return -EINVAL. */
int tsw_vault_reader_renew(struct tsw_vault_reader *r);
/* When a renew found new keys in the key file but refused them (a key
 * differs from the vault's check value for its id, the file lacks the
 * vault's current key, or this process holds TSW_VAULT_KEYS_MAX keys
 * already: -TSW_E_BAD_KEY, -TSW_E_FULL), returns that error once, to one
 * caller, so it is logged and counted once; 0 otherwise. The keys loaded
 * before stay in use. Any thread; lock-free. */
int tsw_vault_take_key_error(struct tsw_vault *v);
void tsw_vault_reader_reset(struct tsw_vault_reader *r);

/* Looks token up, authenticates the whole record (the AES-GCM seal of
 * its PAN covers every other byte of it and the token) and copies the
 * decoded record into *ret_token (caller owned; no pointers into the map,
 * valid after reset). A token that is not 13-19 digits is simply not
 * found. Returns 0, -TSW_E_NOT_FOUND, -TSW_E_INTEGRITY (the record fails
 * authentication: edited, copied from another token, a format 1 record
 * in a format 2 vault, or sealed under a key this process lacks),
 * -TSW_E_CORRUPT (record fails its layout check), -EINVAL (reader not
 * renewed). */
int tsw_vault_lookup(struct tsw_vault_reader *r, const char *token, size_t len,
		     struct tsw_token *ret_token);

/* tsw_vault_lookup() without the authentication: the record decoded as
 * stored (its layout checked), for a caller that decides on it and then
 * calls tsw_vault_decrypt_pan(), which authenticates the whole record
 * again (the seal covers every field): nothing can be approved on an
 * edited record, and a decision to decline needs no PAN. Half the
 * AES-GCM work of lookup + decrypt on the switch's path. Returns what
 * tsw_vault_lookup() returns, but never -TSW_E_INTEGRITY. */
int tsw_vault_peek(struct tsw_vault_reader *r, const char *token, size_t len,
		   struct tsw_token *ret_token);

/* 1 when token's record is authenticated (version 2) and its seal opens,
 * 0 for a format 1 record in a vault opened with TSW_VAULT_FORMAT1_OK
 * (nothing to check it with), or the errors of tsw_vault_lookup. */
int tsw_vault_authenticated(struct tsw_vault_reader *r, const char *token, size_t len);

/* Decrypts the PAN of a record returned by lookup into out (digits, not
 * NUL-terminated); the caller wipes out when done. Needs no renewed
 * transaction. Returns the PAN length, or -TSW_E_INTEGRITY (t differs
 * from the record as stored), -TSW_E_NO_SPACE (cap too small),
 * -TSW_E_NOT_FOUND (key id unknown to this process), -ENOMEM. */
int tsw_vault_decrypt_pan(struct tsw_vault_reader *r, const struct tsw_token *t, char *out,
			  size_t cap);

/* 1 when device_ref is bound to token, 0 when not (also for a malformed
 * token or ref), -EINVAL when the reader is not renewed, or another
 * negative error. */
int tsw_vault_device_bound(struct tsw_vault_reader *r, const char *token, size_t token_len,
			   const char *device_ref, size_t ref_len);

/* ---- write side (tokvault, tests; never the switch's hot path) ----
 * Every function below needs a vault opened without TSW_VAULT_RDONLY
 * (else -EROFS) and runs in its own LMDB write transaction (bulk writes
 * and rekey: one per chunk), so a failure leaves the vault as it was (bulk
 * writes and rekey: as of the last committed chunk). Tokens and PANs are
 * ASCII digits of the given length (no NUL needed). Call from one thread
 * at a time per vault handle. None of them logs. A full LMDB map is
 * -ENOSPC (tsw_lmdb_errno(), as for the state). */

/* Adds a token BIN range (prefix digits); adding an existing one is a
 * no-op. Returns 0, -TSW_E_BAD_INPUT, -TSW_E_FULL, -EROFS, -errno. */
int tsw_vault_add_token_bin(struct tsw_vault *v, const char *prefix, size_t len);

/* A token to write: the decoded record plus the card behind it.
 * token.key_id, card_id, sealed_*, card_suspended, atc_epoch and the
 * original_trid/ref/assurance fields are computed by the vault (the
 * original_* data are copied from the original token's record). */
struct tsw_vault_row {
	struct tsw_token token;
	char pan[TSW_PAN_MAX_DIGITS + 1];
	uint8_t pan_len;
	char device_ref[TSW_DEVICE_REF_MAX + 1]; /* "" or one device to bind */
};

/* Called once per rejected row, always on the thread that calls
 * tsw_vault_batch_add/_finish. reason is a static string without any
 * field value (never the PAN). */
typedef void (*tsw_vault_reject_fn)(void *ctx, unsigned long line, int err, const char *reason);

struct tsw_vault_import_stats {
	unsigned long rows;	/* rows offered */
	unsigned long imported; /* rows committed */
	unsigned long rejected; /* rows reported through the reject callback */
	unsigned long chunks;	/* write transactions committed */
	unsigned chunk_rows;	/* rows per transaction (records or index entries) */
	uint64_t paced_ns;	/* time the writer waited to keep to the import rate */
};

struct tsw_vault_batch;

/* Bounds the memory a bulk write begun afterwards on v sorts in (see
 * TSW_VAULT_SORT_MEM_DEFAULT_BYTES). Returns 0, or -EINVAL when bytes is
 * outside [TSW_VAULT_SORT_MEM_MIN_BYTES, TSW_VAULT_SORT_MEM_MAX_BYTES]. */
int tsw_vault_set_sort_mem(struct tsw_vault *v, size_t bytes);

/* Sets how many rows a bulk write begun afterwards on v with chunk_rows
 * 0 (tsw_vault_import_csv) commits per transaction
 * (TSW_VAULT_CHUNK_ROWS_DEFAULT until set). Smaller chunks make each
 * commit shorter: less held behind the writer lock, fewer dirty pages
 * per fsync. Returns 0, or -EINVAL outside [1, TSW_VAULT_CHUNK_ROWS_MAX]. */
int tsw_vault_set_chunk_rows(struct tsw_vault *v, unsigned rows);

/* Bounds a bulk write begun afterwards on v to rows_per_s rows a second
 * (0, the default: unlimited), so that an import into a vault the switch
 * is reading leaves it the machine. Before each transaction the writer
 * sleeps until what it committed so far is not ahead of that rate (a
 * row's record and its index entry are written in separate transactions
 * and count half a row each); the first transaction does not wait, and
 * time spent behind the rate is not saved up. K rows take at least
 * (K - chunk rows) / rows_per_s seconds; the sealing before the writes is
 * not paced. Returns 0, or -EINVAL above TSW_VAULT_IMPORT_RATE_MAX. */
int tsw_vault_set_import_rate(struct tsw_vault *v, uint64_t rows_per_s);

/* Starts a bulk write: rows are validated on the caller's thread and
 * handed in blocks to a worker thread, which encrypts them into a run of
 * at most the vault's sort memory. When the run is full, and at _finish,
 * the worker sorts it by token and writes it chunk_rows per transaction
 * (0: the vault's, tsw_vault_set_chunk_rows) at the vault's import rate
 * (tsw_vault_set_import_rate), appending where the tokens come after
 * the vault's last one, then writes the index entries sorted by card the
 * same way. Sorting whole runs keeps random-order imports from rewriting
 * the tree once per chunk; an import that fits one run into an empty
 * vault is appended. A row that fails validation, or whose token exists
 * already, is rejected (callback) and the others land. Token-for-token
 * rows are written after all others, so their original may come later in
 * the same batch. Memory: the sort memory (address space reserved at
 * begin, touched as rows arrive) plus about 0.7 MiB of row blocks.
 * Returns 0, -EROFS, -ENOMEM, -errno. */
int tsw_vault_batch_begin(struct tsw_vault *v, unsigned chunk_rows, tsw_vault_reject_fn on_reject,
			  void *ctx, struct tsw_vault_batch **ret_batch);
/* Adds one row (copied; line is what rejects report). Returns 0 (also
 * when the row was rejected), or a negative error that ends the batch:
 * call _finish to clean up. */
int tsw_vault_batch_add(struct tsw_vault_batch *b, const struct tsw_vault_row *row,
			unsigned long line);
/* Writes what is left, waits for the worker, frees b. Returns 0 or the
 * first LMDB/system error (chunks committed before it stay committed). */
int tsw_vault_batch_finish(struct tsw_vault_batch *b, struct tsw_vault_import_stats *ret_stats);

/* Imports a CSV whose header row names the columns (DESIGN.md "Interfaces
 * that scripts rely on"; token,pan,pan_expiry,token_expiry are required).
 * Bad rows are reported as (line, reason) and skipped; good rows land in
 * chunks. A line longer than 4096 bytes (its newline included) is one
 * bad row, read past in a fixed buffer: memory does not grow with it.
 * Returns 0 (even with rejected rows), -TSW_E_BAD_INPUT (no, bad or
 * over-long header: nothing written), -EROFS, -EIO (a read error on in:
 * rows before it may have landed), -errno. */
int tsw_vault_import_csv(struct tsw_vault *v, FILE *in, tsw_vault_reject_fn on_reject, void *ctx,
			 struct tsw_vault_import_stats *ret_stats);

/* Sets a token's status; *ret_old gets the previous one (may be NULL).
 * Returns 0, -TSW_E_NOT_FOUND, -TSW_E_BAD_INPUT, -EROFS, -errno. */
int tsw_vault_set_status(struct tsw_vault *v, const char *token, size_t len,
			 enum tsw_token_status status, enum tsw_token_status *ret_old);

/* Suspends or resumes the card behind pan: the card's state is kept and
 * every token of the card gets card_suspended set or cleared (tokens
 * imported later inherit it). *ret_tokens: tokens changed or checked.
 * Returns 0, -TSW_E_NOT_FOUND (no token for that PAN), -TSW_E_BAD_INPUT,
 * -EROFS, -errno. */
int tsw_vault_set_card_suspended(struct tsw_vault *v, const char *pan, size_t pan_len,
				 bool suspended, size_t *ret_tokens);

/* Reissue: relinks every token of old_pan to new_pan with new_expiry
 * (YYMM), re-encrypting each under the current key. Returns 0,
 * -TSW_E_NOT_FOUND, -TSW_E_BAD_INPUT, -EROFS, -errno. */
int tsw_vault_update_pan(struct tsw_vault *v, const char *old_pan, size_t old_len,
			 const char *new_pan, size_t new_len, const char *new_expiry,
			 size_t *ret_tokens);

/* Binds / unbinds a device reference (1..TSW_DEVICE_REF_MAX printable
 * bytes). bind: 0, -TSW_E_EXISTS (already bound), -TSW_E_FULL,
 * -TSW_E_NOT_FOUND (token), -TSW_E_BAD_INPUT. unbind: 0,
 * -TSW_E_NOT_FOUND (token, or ref not bound). Both also -EROFS, -errno. */
int tsw_vault_bind_device(struct tsw_vault *v, const char *token, size_t len, const char *ref,
			  size_t ref_len);
int tsw_vault_unbind_device(struct tsw_vault *v, const char *token, size_t len, const char *ref,
			    size_t ref_len);

/* tsw_vault_repersonalize()'s psn: the record's PSN plus one. */
#define TSW_VAULT_PSN_NEXT (-1)

/* The token's device was personalized again: resets its ATC (increments
 * its atc_epoch) and gives the new device a new PSN, psn (0..99) or
 * TSW_VAULT_PSN_NEXT. The PSN is part of the ICC master key's derivation,
 * so cryptograms of the old devices, whose ATCs the reset would make good
 * again, no longer verify; PSNs only go up (never one an earlier device
 * had), so a token whose PSN is 99 cannot be re-personalized: provision a
 * new one. *ret_epoch, *ret_psn (may be NULL): the new values. Returns 0,
 * -TSW_E_BAD_INPUT (psn not above the record's, or above 99: nothing
 * changed), -TSW_E_NOT_FOUND, -EROFS, -errno. */
int tsw_vault_repersonalize(struct tsw_vault *v, const char *token, size_t len, int psn,
			    uint32_t *ret_epoch, unsigned *ret_psn);

/* Provisions a new token for row->pan (or, when row->token.original_token
 * is set and row->pan_len is 0, for the original token's PAN:
 * token-for-token). The token is drawn at random from the BIN range bin
 * (NULL: the first range), token_len digits, Luhn-valid and unused;
 * row->token.token is ignored. *ret_token gets the record as written.
 * Returns 0, -TSW_E_OUT_OF_RANGE (bin is no range of the vault),
 * -TSW_E_FULL (no free token found), -TSW_E_NOT_FOUND (original
 * unknown), -TSW_E_BAD_INPUT, -EROFS, -errno. */
int tsw_vault_provision(struct tsw_vault *v, const struct tsw_vault_row *row, const char *bin,
			size_t bin_len, unsigned token_len, struct tsw_token *ret_token);

struct tsw_vault_stats {
	uint64_t tokens;
	uint64_t by_status[TSW_TOKEN_STATUS_MAX];
	uint64_t card_suspended_tokens;
	uint64_t cards; /* distinct PANs */
	uint64_t suspended_cards;
	uint64_t device_bindings;
	uint64_t by_key[TSW_VAULT_KEYS_MAX]; /* tokens per key slot below */
	uint32_t key_ids[TSW_VAULT_KEYS_MAX];
	unsigned n_keys;
	uint32_t current_key_id;
	unsigned n_bins;
	char bins[TSW_VAULT_BINS_MAX][TSW_VAULT_BIN_MAX_DIGITS + 1];
	uint64_t map_used_bytes;
	bool keys_locked;	     /* keys are in mlock'ed memory */
	uint64_t unauthenticated;    /* format 1 records (tokvault upgrade rewrites them) */
	uint64_t integrity_failures; /* records failing authentication */
};

/* Counts everything (walks every record: seconds at 10 M tokens). Works
 * on a read-only vault too. Returns 0, -TSW_E_CORRUPT, -errno. */
int tsw_vault_stats(struct tsw_vault *v, struct tsw_vault_stats *ret_stats);

/* What tsw_vault_reseal does. */
enum tsw_vault_reseal {
	TSW_VAULT_RESEAL_NEW_KEY, /* a new PAN key, then every record sealed under it */
	TSW_VAULT_RESEAL_FINISH,  /* records not under the current key yet (after a crash) */
	TSW_VAULT_RESEAL_UPGRADE, /* format 1 records only: authenticated, then format 2 */
	TSW_VAULT_RESEAL_MAX
};

/* The steps of a reseal, each reported once it is durable. */
enum tsw_vault_reseal_step {
	TSW_VAULT_STEP_KEY_FILE,    /* the new key is in the key file (not used yet) */
	TSW_VAULT_STEP_KEY_CURRENT, /* the vault names it current: new writes use it */
	TSW_VAULT_STEP_CHUNK,	    /* a chunk of records committed (records: so far) */
	TSW_VAULT_STEP_DONE,
	TSW_VAULT_STEP_MAX
};

typedef void (*tsw_vault_progress_fn)(void *ctx, enum tsw_vault_reseal_step step, uint64_t records);

struct tsw_vault_reseal_opts {
	enum tsw_vault_reseal mode;
	unsigned chunk_rows;		/* records per transaction; 0: TSW_VAULT_REKEY_CHUNK_ROWS */
	tsw_vault_progress_fn progress; /* NULL: none */
	void *ctx;
};

struct tsw_vault_reseal_result {
	uint32_t key_id;  /* the current key the records are now sealed under */
	uint64_t records; /* records sealed again */
	uint64_t failed;  /* records failing authentication, left as they were */
};

/* Seals records again, every one authenticated as a whole (version 2).
 * NEW_KEY first writes a new PAN key (id = highest + 1) into key_file
 * durably (temp file, fsync, rename, directory fsync) and only then, in
 * one transaction, makes it the vault's current key; then every record
 * not under it is sealed again, chunk_rows per transaction, each commit
 * durable. Old keys stay in the key file (tsw_vault_retire_key removes
 * one no record uses), so a crash at any step leaves every PAN readable;
 * FINISH completes an interrupted run without a new key (a NEW_KEY run
 * after a crash between the two first steps takes the key left in the
 * file). UPGRADE seals the format 1 records of a vault (opened with
 * TSW_VAULT_FORMAT1_OK) and marks it format 2. Readers pick a new key up
 * at their next tsw_vault_reader_renew. Returns 0, -TSW_E_FULL (the key
 * file holds TSW_VAULT_KEYS_MAX keys: retire one), -EROFS, -EINVAL,
 * -errno; chunks committed before an error stay. */
int tsw_vault_reseal(struct tsw_vault *v, const struct tsw_vault_reseal_opts *o,
		     struct tsw_vault_reseal_result *ret_result);

/* tsw_vault_reseal NEW_KEY with the defaults. *ret_key_id and
 * *ret_records may be NULL. */
int tsw_vault_rekey(struct tsw_vault *v, uint32_t *ret_key_id, uint64_t *ret_records);

/* tsw_vault_reseal UPGRADE; *ret_records: records authenticated (may be
 * NULL). */
int tsw_vault_upgrade(struct tsw_vault *v, uint64_t *ret_records);

/* Rotates the PAN index key (HMAC-SHA-256 of the PAN: the "index" and
 * "cards" keys, and every record's card_id). A new index key is written
 * into key_file durably and the vault marks a rebuild in progress; the
 * index is rebuilt under it into a second pair of databases,
 * o->chunk_rows records per transaction (each record sealed again with
 * its new card id), then one transaction switches to the new pair and
 * key; the old pair is emptied and the old key leaves the key file. While
 * the mark is set (and in a handle opened before the switch) every write
 * that touches the index (import, provision, card verbs, reissue) is
 * -EBUSY; lookups and token verbs go on. A crash at any step leaves every
 * PAN readable; running it again resumes the marked rebuild from the
 * start. *ret_result: key_id the new index key, records indexed, failed
 * records failing authentication (left out of the index). o->mode is not
 * used. Returns 0, -TSW_E_FULL (TSW_VAULT_INDEX_KEYS_MAX index keys),
 * -TSW_E_BAD_KEY (the marked key is missing from, or differs in, the key
 * file), -EROFS, -errno. */
int tsw_vault_rekey_index(struct tsw_vault *v, const struct tsw_vault_reseal_opts *o,
			  struct tsw_vault_reseal_result *ret_result);

/* Takes PAN key id out of key_file (rewritten durably) and drops its
 * check value, once no record refers to it; *ret_records (may be NULL):
 * records still under it. Returns 0, -TSW_E_NOT_FOUND (no such key),
 * -EBUSY (the current key, or records use it), -EROFS, -errno. A running
 * switch keeps the key in memory until it restarts. */
int tsw_vault_retire_key(struct tsw_vault *v, uint32_t id, uint64_t *ret_records);

/* ---- key store: the card cryptography keys (docs/vault.md, docs/hsm.md) ----
 *
 * Keys for src/hsm live in the vault environment (database "hsmkeys"),
 * each sealed like a PAN: AES-256-GCM under the vault's current PAN key,
 * every other byte of its record (kind, id, scope, algorithm, check value,
 * state, times) as associated data, so an edited or moved record fails to
 * open. A key has a kind, an id (unique within its kind, for ever: a
 * retired key keeps its id), a scope (what selects it) and an algorithm:
 *
 *	kind          scope                         algorithms
 *	imk-ac        token BIN range prefix        TDES2 (EMV option A is TDES)
 *	zpk-acquirer  acquirer id (DE32 digits)     TDES2, TDES3, AES-128, AES-256
 *	zpk-issuer    issuer index (0..255)         TDES2, TDES3, AES-128, AES-256
 *	tavv          token BIN range prefix        AES-128, AES-256 (AES-CMAC)
 *
 * Rotation: several active keys may share a kind and scope; a new one is
 * added, the old one retired when nothing uses it any more. Retired keys
 * stay in the store, marked retired (never loaded again, their id never
 * reused: the store keeps the history). The check value (KCV) is the
 * one tsw_hsm computes: TDES, 3 bytes of E(K, 0^8); AES, 5 bytes of
 * AES-CMAC(K, 0^16).
 *
 * Threads: tsw_vault_key_add() and tsw_vault_key_retire() are writes
 * (above: one thread at a time per handle, -EROFS on a read-only vault);
 * tsw_vault_key_list() and tsw_vault_key_load() each run in a read
 * transaction of their own and may run on any thread, also on a
 * read-only vault, beside readers and a writer in another process.
 * No function here logs; no error carries key bytes. */
enum tsw_vault_key_kind {
	TSW_VAULT_KEY_IMK_AC,
	TSW_VAULT_KEY_ZPK_ACQUIRER,
	TSW_VAULT_KEY_ZPK_ISSUER,
	TSW_VAULT_KEY_TAVV,
	TSW_VAULT_KEY_KIND_MAX
};

/* In the order of enum tsw_hsm_alg (the engine passes it on). */
enum tsw_vault_key_alg {
	TSW_VAULT_KEY_TDES2,  /* 16 bytes */
	TSW_VAULT_KEY_TDES3,  /* 24 bytes */
	TSW_VAULT_KEY_AES128, /* 16 bytes */
	TSW_VAULT_KEY_AES256, /* 32 bytes */
	TSW_VAULT_KEY_ALG_MAX
};

enum tsw_vault_key_state {
	TSW_VAULT_KEY_ACTIVE,
	TSW_VAULT_KEY_RETIRED,
	TSW_VAULT_KEY_STATE_MAX
};

#define TSW_VAULT_HSM_KEYS_MAX 1024u /* keys in the store, retired included */
#define TSW_VAULT_KEY_ID_MAX 32u     /* id: 1..32 of [A-Za-z0-9._-] */
#define TSW_VAULT_KEY_SCOPE_MAX 12u  /* scope digits */
#define TSW_VAULT_KEY_BYTES_MAX 32u
#define TSW_VAULT_KCV_MAX 5u

struct tsw_vault_key_info {
	uint8_t kind;	 /* enum tsw_vault_key_kind */
	uint8_t alg;	 /* enum tsw_vault_key_alg */
	uint8_t state;	 /* enum tsw_vault_key_state */
	uint8_t kcv_len; /* 3 (TDES) or 5 (AES) */
	uint8_t kcv[TSW_VAULT_KCV_MAX];
	char id[TSW_VAULT_KEY_ID_MAX + 1];
	char scope[TSW_VAULT_KEY_SCOPE_MAX + 1]; /* digits: range prefix, DE32 or issuer index */
	uint32_t sealed_by;			 /* the PAN key id that seals it */
	uint64_t added;				 /* unix seconds */
	uint64_t retired;			 /* unix seconds; 0 while active */
};

/* A usable key with its bytes, filled by tsw_vault_key_load(). */
struct tsw_vault_key {
	struct tsw_vault_key_info info;
	uint8_t len; /* 16, 24 or 32 by info.alg */
	uint8_t bytes[TSW_VAULT_KEY_BYTES_MAX];
};

/* "imk-ac", "zpk-acquirer", "zpk-issuer", "tavv" / "tdes2", "tdes3",
 * "aes128", "aes256" / "active", "retired"; "?" out of range. Static. */
const char *tsw_vault_key_kind_name(enum tsw_vault_key_kind kind);
const char *tsw_vault_key_alg_name(enum tsw_vault_key_alg alg);
const char *tsw_vault_key_state_name(enum tsw_vault_key_state state);
/* The kind or algorithm of a name above; -TSW_E_BAD_INPUT when none. */
int tsw_vault_key_kind_parse(const char *name, enum tsw_vault_key_kind *ret_kind);
int tsw_vault_key_alg_parse(const char *name, enum tsw_vault_key_alg *ret_alg);
/* Bytes of a key of alg (16, 24, 16, 32); 0 out of range. */
size_t tsw_vault_key_alg_len(enum tsw_vault_key_alg alg);

/* Adds the key bytes[0..len) of kind, alg, id and scope (taken from *in:
 * the other fields are ignored) as an active key, sealed under the
 * current PAN key. The caller wipes bytes. TDES keys may carry any
 * parity (DES ignores it); refused as weak: all zero bytes, or (parity
 * ignored) K1 = K2, or K2 = K3 for TDES3 (single DES in disguise).
 * *ret_info (may be NULL) gets the stored record, check value included.
 * Returns 0, -TSW_E_BAD_INPUT (kind, an algorithm the kind does not take,
 * len not the algorithm's, an id or scope of the wrong form, a weak
 * key), -TSW_E_EXISTS (the kind has that id already, active or retired),
 * -TSW_E_FULL (TSW_VAULT_HSM_KEYS_MAX keys), -EROFS, -EIO, -errno. */
int tsw_vault_key_add(struct tsw_vault *v, const struct tsw_vault_key_info *in,
		      const uint8_t *bytes, size_t len, struct tsw_vault_key_info *ret_info);

/* Marks key id (id_len bytes) of kind retired: it is never loaded again.
 * The record is authenticated first and sealed again with its new state.
 * *ret_info (may be NULL): the record as now stored. Returns 0,
 * -TSW_E_NOT_FOUND (no such key), -EALREADY (retired already),
 * -TSW_E_INTEGRITY (the record fails authentication: left as it is),
 * -TSW_E_BAD_INPUT, -EROFS, -errno. A running switch keeps a retired key
 * until it loads the keys again. */
int tsw_vault_key_retire(struct tsw_vault *v, enum tsw_vault_key_kind kind, const char *id,
			 size_t id_len, struct tsw_vault_key_info *ret_info);

/* Called once per stored key, in (kind, id) order, with what the record
 * says (never the bytes) and err: 0 when its seal opened, else why it did
 * not (-TSW_E_INTEGRITY: edited, moved or damaged; -TSW_E_NOT_FOUND:
 * sealed under a PAN key the key file lacks; -TSW_E_CORRUPT: not a key
 * record at all, info then holds only kind and id). A nonzero return
 * stops the walk; tsw_vault_key_list() returns it. */
typedef int (*tsw_vault_key_fn)(void *ctx, const struct tsw_vault_key_info *info, int err);

/* Walks every stored key, active and retired, authenticating each (the
 * bytes are decrypted into a scratch buffer, wiped at once). Returns 0,
 * what fn returned, or -errno. */
int tsw_vault_key_list(struct tsw_vault *v, tsw_vault_key_fn fn, void *ctx);

/* Copies every active key, authenticated, with its bytes, into
 * keys[0..*ret_n) in (kind, id) order; the caller imports them (into
 * tsw_hsm's locked memory) and wipes keys (OPENSSL_cleanse) at once.
 * Every temporary here is wiped before return. A key failing
 * authentication fails the whole load: the caller keeps the keys it
 * has. On any error keys[0..cap) is wiped and *ret_n untouched. Returns
 * 0, -TSW_E_NO_SPACE (more than cap active keys), -TSW_E_INTEGRITY
 * (a key record fails authentication or its check value),
 * -TSW_E_NOT_FOUND (a key sealed under a PAN key this process lacks),
 * -TSW_E_CORRUPT, -errno. */
int tsw_vault_key_load(struct tsw_vault *v, struct tsw_vault_key *keys, size_t cap,
		       size_t *ret_n);

/* ---- replication (src/cluster, docs/cluster.md) ----
 *
 * A change is the write set of one write transaction of the vault: every
 * put, delete and drop, with its database, key and value (records as
 * stored: PANs sealed), serialized and sealed as a whole with
 * AES-256-GCM under a key derived from the vault's current PAN key
 * (HMAC-SHA-256 of a fixed label), so every node holding the same key
 * file opens it and nobody else reads a token, a card key or a record. */

/* Rows per write transaction of a bulk write or a reseal while a change
 * hook is set: a change must fit one message (about 600 bytes a row
 * at most: ~0.6 MB). */
#define TSW_VAULT_CHANGE_CHUNK_ROWS 1000
#define TSW_VAULT_DIGEST_BYTES 32

/* What a change hook is offered: the sealed change, the last sequence
 * this vault applied (0: none; a publisher may make the stream refuse
 * the change unless that is still the stream's last) and an id unique to
 * the change (hex, for a publisher's duplicate detection). */
struct tsw_vault_change {
	const uint8_t *sealed;
	size_t len;
	uint64_t prev_seq;
	char id[2 * 12 + 1];
};

/* Called in every write transaction, before it commits, with the change
 * it made (never for a transaction that changed nothing). Returns 0 with
 * *ret_seq the sequence the change got (stored in the same transaction,
 * so the vault's own change is never applied again), or a negative error:
 * the transaction is then aborted and the write function returns it. */
typedef int (*tsw_vault_change_fn)(void *ctx, const struct tsw_vault_change *c, uint64_t *ret_seq);

/* Sets (fn NULL: clears) the change hook of v; changes larger than
 * max_bytes sealed fail with -EMSGSIZE (nothing written). Bulk writes and
 * reseals begun afterwards write TSW_VAULT_CHANGE_CHUNK_ROWS rows per
 * transaction at most. Returns 0, -EROFS, -EINVAL (max_bytes too small). */
int tsw_vault_set_change_hook(struct tsw_vault *v, tsw_vault_change_fn fn, void *ctx,
			      size_t max_bytes);

/* Applies a sealed change with its stream sequence seq (> 0) in one
 * write transaction that also stores seq as the vault's last applied
 * sequence. Returns 0 applied, 1 skipped (seq is not above the stored
 * one: a redelivery, or the vault's own change), -TSW_E_INTEGRITY (the
 * seal does not open: tampered, truncated, or sealed under a PAN key the
 * key file lacks), -TSW_E_CORRUPT (opens but is no change this build
 * reads), -EROFS, -EINVAL, -errno. Nothing is written on an error. */
int tsw_vault_change_apply(struct tsw_vault *v, const uint8_t *sealed, size_t len, uint64_t seq);

/* A sealed change and its stream sequence. */
struct tsw_vault_sealed {
	const uint8_t *bytes;
	size_t len;
	uint64_t seq;
};

/* tsw_vault_change_apply() for c[0, n) (sequences ascending) in ONE
 * write transaction, so a node catching up pays one commit for a burst:
 * those not above the stored sequence are skipped, the others applied in
 * order and the last one's sequence stored. *ret_applied: how many were
 * applied. Any error writes nothing (apply them one by one to find the
 * failing one). Returns 0, -EINVAL (a sequence 0 or out of order), or
 * the errors of tsw_vault_change_apply(). */
int tsw_vault_changes_apply(struct tsw_vault *v, const struct tsw_vault_sealed *c, size_t n,
			    size_t *ret_applied);

/* The last sequence applied to (or published from) v, 0 for none.
 * Returns 0 or -errno. */
int tsw_vault_change_seq(struct tsw_vault *v, uint64_t *ret_seq);

/* SHA-256 over every key and value of every database (the last applied
 * sequence left out: *ret_seq gets it, may be NULL): two replicas with
 * the same digest hold the same vault. Open v writable (a read-only
 * handle may not have opened the key store yet). Returns 0 or -errno. */
int tsw_vault_digest(struct tsw_vault *v, uint8_t out[TSW_VAULT_DIGEST_BYTES], uint64_t *ret_seq);

#endif
