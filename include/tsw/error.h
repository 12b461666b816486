/* tokswitch error codes.
 *
 * Every function that can fail returns int: 0 (or a non-negative count) on
 * success, -errno for system errors, or one of the -TSW_E_* codes below.
 * The private range starts well above the largest errno so the two never
 * collide. Error strings never carry field values, PANs, tokens or keys.
 */
#ifndef TSW_ERROR_H
#define TSW_ERROR_H

enum {
	TSW_E_BASE = 10000,
	/* framing and codec */
	TSW_E_TRUNCATED = TSW_E_BASE, /* frame or field ends before its length */
	TSW_E_FRAME_TOO_BIG,          /* length header above the configured maximum */
	TSW_E_BAD_HEADER,             /* length header not parsable (ASCII profile) */
	TSW_E_NO_MTI,                 /* fewer than 4 bytes, or MTI not 4 digits */
	TSW_E_BAD_BITMAP,             /* bitmap not parsable (hex profile) */
	TSW_E_UNDEFINED_FIELD,        /* bitmap names a field the profile lacks */
	TSW_E_NOT_NUMERIC,            /* non-digit in an n field or length prefix */
	TSW_E_BAD_CHARSET,            /* byte outside the field's character set */
	TSW_E_FIELD_TOO_LONG,         /* LL/LLL length above the field maximum */
	TSW_E_TRAILING,               /* bytes after the last field */
	TSW_E_NO_SPACE,               /* output buffer too small */
	TSW_E_BAD_PROFILE,            /* profile file malformed */
	TSW_E_BAD_TLV,                /* BER-TLV or DE48 subelement malformed */
	/* vault and state */
	TSW_E_NOT_FOUND,      /* token, PAN or key unknown */
	TSW_E_EXISTS,         /* record already present */
	TSW_E_CORRUPT,        /* record fails its layout or version check */
	TSW_E_BAD_KEY,        /* key file missing, malformed or too open */
	TSW_E_DECRYPT,        /* AEAD authentication failed */
	TSW_E_BAD_INPUT,      /* argument or CSV value invalid */
	TSW_E_OUT_OF_RANGE,   /* token outside every token BIN range */
	TSW_E_FULL,           /* table, queue or map full */
	TSW_E_VERSION,        /* on-disk format newer than this build */
	TSW_E_NOT_OWNER,      /* file or directory owned by another user (tsw/harden.h) */
	TSW_E_TOO_OPEN,       /* file or directory group or others may change */
	TSW_E_INTEGRITY,      /* vault record fails authentication (edited, moved, downgraded) */
	TSW_E_NEEDS_UPGRADE,  /* vault records not authenticated yet: run tokvault upgrade */
	/* config */
	TSW_E_CONFIG,         /* bad configuration value */
	/* card cryptography (hsm) */
	TSW_E_CRYPTOGRAM,     /* an EMV cryptogram does not verify */
	TSW_E_PIN_FORMAT,     /* a PIN block does not decrypt to its format */
	TSW_E_PIN_PAN,        /* a PIN block was formed with another account number */
	TSW_E_ATC_WINDOW,     /* an ATC too far ahead of the last one accepted */
	TSW_E_MAX
};

/* Returns a static string for a -errno or -TSW_E_* value (sign ignored).
 * Never NULL. Safe from any thread. */
const char *tsw_strerror(int err);

/* The one mapping of an LMDB return code to ours, for the vault and the
 * state alike: 0 for MDB_SUCCESS; a positive errno (LMDB passes the
 * system's on) as -errno; MDB_NOTFOUND -TSW_E_NOT_FOUND; MDB_KEYEXIST
 * -TSW_E_EXISTS; MDB_MAP_FULL -ENOSPC (the file has no room: what a full
 * disk says too); MDB_READERS_FULL, MDB_TXN_FULL, MDB_DBS_FULL
 * -TSW_E_FULL (a table of LMDB's own); MDB_VERSION_MISMATCH
 * -TSW_E_VERSION; MDB_INVALID, MDB_CORRUPTED, MDB_PAGE_NOTFOUND,
 * MDB_INCOMPATIBLE, MDB_BAD_VALSIZE -TSW_E_CORRUPT (the file is not what
 * this build wrote); any other (LMDB's internal errors: MDB_PAGE_FULL,
 * MDB_CURSOR_FULL, MDB_BAD_DBI, MDB_PANIC, ...) -EIO. Takes an int so
 * that only src/common/error.c includes <lmdb.h>. */
int tsw_lmdb_errno(int rc);

#endif
