#include <errno.h>
#include <lmdb.h>
#include <string.h>

#include "tsw/error.h"

static const char *const tsw_messages[TSW_E_MAX - TSW_E_BASE] = {
	[TSW_E_TRUNCATED - TSW_E_BASE] = "truncated",
	[TSW_E_FRAME_TOO_BIG - TSW_E_BASE] = "frame above the maximum size",
	[TSW_E_BAD_HEADER - TSW_E_BASE] = "bad length header",
	[TSW_E_NO_MTI - TSW_E_BASE] = "missing or bad MTI",
	[TSW_E_BAD_BITMAP - TSW_E_BASE] = "bad bitmap",
	[TSW_E_UNDEFINED_FIELD - TSW_E_BASE] = "field not defined by the profile",
	[TSW_E_NOT_NUMERIC - TSW_E_BASE] = "non-digit in a numeric field",
	[TSW_E_BAD_CHARSET - TSW_E_BASE] = "character outside the field's set",
	[TSW_E_FIELD_TOO_LONG - TSW_E_BASE] = "field length above its maximum",
	[TSW_E_TRAILING - TSW_E_BASE] = "trailing bytes after the last field",
	[TSW_E_NO_SPACE - TSW_E_BASE] = "output buffer too small",
	[TSW_E_BAD_PROFILE - TSW_E_BASE] = "bad field-spec profile",
	[TSW_E_BAD_TLV - TSW_E_BASE] = "bad TLV or subelement",
	[TSW_E_NOT_FOUND - TSW_E_BASE] = "not found",
	[TSW_E_EXISTS - TSW_E_BASE] = "already exists",
	[TSW_E_CORRUPT - TSW_E_BASE] = "corrupt record",
	[TSW_E_BAD_KEY - TSW_E_BASE] = "bad key file",
	[TSW_E_DECRYPT - TSW_E_BASE] = "decryption failed",
	[TSW_E_BAD_INPUT - TSW_E_BASE] = "invalid input",
	[TSW_E_OUT_OF_RANGE - TSW_E_BASE] = "outside every token BIN range",
	[TSW_E_FULL - TSW_E_BASE] = "full",
	[TSW_E_VERSION - TSW_E_BASE] = "unsupported format version",
	[TSW_E_NOT_OWNER - TSW_E_BASE] = "owned by another user",
	[TSW_E_TOO_OPEN - TSW_E_BASE] = "group or others may change it",
	[TSW_E_INTEGRITY - TSW_E_BASE] = "record fails authentication",
	[TSW_E_NEEDS_UPGRADE - TSW_E_BASE] =
	    "vault records are not authenticated (format 1): run tokvault upgrade",
	[TSW_E_CONFIG - TSW_E_BASE] = "bad configuration",
	[TSW_E_CRYPTOGRAM - TSW_E_BASE] = "cryptogram does not verify",
	[TSW_E_PIN_FORMAT - TSW_E_BASE] = "PIN block malformed",
	[TSW_E_PIN_PAN - TSW_E_BASE] = "PIN block bound to another account number",
	[TSW_E_ATC_WINDOW - TSW_E_BASE] = "ATC too far ahead of the last one accepted",
};

const char *tsw_strerror(int err)
{
	const char *s;

	if (err < 0)
		err = -err;
	if (err >= TSW_E_BASE && err < TSW_E_MAX) {
		s = tsw_messages[err - TSW_E_BASE];
		return s ? s : "unknown error";
	}
	/* strerrordesc_np is thread-safe and never writes a buffer. */
	s = strerrordesc_np(err);
	return s ? s : "unknown error";
}

int tsw_lmdb_errno(int rc)
{
	if (rc >= 0)
		return -rc;
	switch (rc) {
	case MDB_NOTFOUND:
		return -TSW_E_NOT_FOUND;
	case MDB_KEYEXIST:
		return -TSW_E_EXISTS;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_READERS_FULL:
	case MDB_TXN_FULL:
	case MDB_DBS_FULL:
		return -TSW_E_FULL;
	case MDB_VERSION_MISMATCH:
		return -TSW_E_VERSION;
	case MDB_INVALID:
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_VALSIZE:
		return -TSW_E_CORRUPT;
	default:
		return -EIO;
	}
}
