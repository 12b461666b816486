/* ISO 8583:1987 codec: profiles, framing, decode into views, encode with
 * replaced fields, DE48 subelements, BER-TLV, masked formatting.
 *
 * Pure: no I/O, no allocation after a profile is loaded, no logging. Error
 * values never carry field contents; decode reports the failing field
 * number in msg->err_field.
 */
#ifndef TSW_ISO8583_H
#define TSW_ISO8583_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TSW_ISO_FIELDS 129          /* index 0 unused, 1..128 */
#define TSW_ISO_MAX_FRAME_DEFAULT 8192
#define TSW_ISO_BIN2_BODY_MAX 65535u  /* the largest body a 2-byte header says */
#define TSW_ISO_ASCII4_BODY_MAX 9999u /* ... and 4 ASCII digits */
#define TSW_ISO_NAME_MAX 48

enum tsw_iso_type {
	TSW_ISO_N,   /* digits */
	TSW_ISO_AN,  /* letters and digits (and space, as real networks pad) */
	TSW_ISO_ANS, /* printable ASCII */
	TSW_ISO_B,   /* raw bytes (hex text in the hexbitmap profile) */
	TSW_ISO_Z,   /* track 2: digits, '=' and 'D' */
	TSW_ISO_XN,  /* x+n: 'C' or 'D' then digits (the length counts the sign) */
	TSW_ISO_TYPE_MAX
};

enum tsw_iso_len {
	TSW_ISO_FIXED,
	TSW_ISO_LL,
	TSW_ISO_LLL,
	TSW_ISO_LEN_MAX
};

enum tsw_iso_header {
	TSW_ISO_HDR_BIN2,   /* 2-byte big-endian length, excludes itself */
	TSW_ISO_HDR_ASCII4, /* 4 ASCII digits, excludes itself */
	TSW_ISO_HDR_NONE,   /* no framing: one message per buffer (vectors) */
	TSW_ISO_HDR_MAX
};

enum tsw_iso_bitmap {
	TSW_ISO_BITMAP_BIN, /* 8 raw bytes per bitmap */
	TSW_ISO_BITMAP_HEX, /* 16 hex characters per bitmap */
	TSW_ISO_BITMAP_MAX
};

struct tsw_iso_field_spec {
	uint8_t defined;  /* 0: the profile has no such field */
	uint8_t type;     /* enum tsw_iso_type */
	uint8_t len_kind; /* enum tsw_iso_len */
	uint16_t max_len; /* fixed length, or maximum for LL/LLL; for B fields
			   * counted in bytes (hex profile: twice as many chars) */
	/* derived by the loader (tsw_iso_profile_load), read by the codec: */
	uint8_t prefix;    /* digits of the length prefix: 0, 2 or 3 */
	uint8_t hex;       /* 1: B field written as hex text (2 chars a byte) */
	uint16_t wire_max; /* wire bytes of the value: fixed length or maximum */
	char name[TSW_ISO_NAME_MAX];
};

struct tsw_iso_profile {
	char name[32];
	uint8_t header;   /* enum tsw_iso_header */
	uint8_t bitmap;   /* enum tsw_iso_bitmap */
	uint32_t max_frame; /* bytes after the length header */
	struct tsw_iso_field_spec fields[TSW_ISO_FIELDS];
};

/* Loads a field-spec profile file (format documented in config/README.md
 * and at the top of config/default.spec) and fills the derived members
 * of each field. Returns 0, or -TSW_E_BAD_PROFILE, -ENOMEM, or the -errno
 * of opening/reading the file, and, when ret_line is not NULL, the 1-based
 * line of the fault (0 when the file could not be read). ret_profile is
 * untouched on failure. The profile holds no pointers: copy it freely. */
int tsw_iso_profile_load(const char *path, struct tsw_iso_profile *ret_profile,
			 unsigned *ret_line);

/* Loads a profile shipped under config/ by name ("default", "hexbitmap",
 * "ascii4"), from dir/NAME.spec (dir NULL: the build's TSW_CONFIG_DIR).
 * Returns 0, -TSW_E_BAD_INPUT (empty name or one with '/'),
 * -ENAMETOOLONG, or what tsw_iso_profile_load returns. */
int tsw_iso_profile_load_named(const char *dir, const char *name,
			       struct tsw_iso_profile *ret_profile);

/* A profile as configured: a name (no '/') loads the shipped one
 * (tsw_iso_profile_load_named, dir NULL), anything with a '/' is a .spec
 * path (tsw_iso_profile_load). Returns what those return. */
int tsw_iso_profile_load_spec(const char *name_or_path, struct tsw_iso_profile *ret_profile);

/* A decoded message. Views point into the buffer passed to decode: valid
 * as long as that buffer is unchanged. */
struct tsw_iso_view {
	uint16_t off; /* offset of the value (after any LL/LLL prefix) */
	uint16_t len; /* length of the value in the wire bytes */
};

struct tsw_iso_msg {
	const uint8_t *buf;
	uint32_t len;
	char mti[4];
	uint64_t bitmap[2];  /* bit for field f: bitmap[(f-1)/64] >> (63-(f-1)%64) & 1 */
	struct tsw_iso_view f[TSW_ISO_FIELDS];
	int err_field;       /* on decode failure: field at fault, 0 for MTI/bitmap */
};

static inline bool tsw_iso_has(const struct tsw_iso_msg *m, unsigned f)
{
	return f >= 1 && f <= 128 && ((m->bitmap[(f - 1) / 64] >> (63 - (f - 1) % 64)) & 1);
}

static inline const uint8_t *tsw_iso_ptr(const struct tsw_iso_msg *m, unsigned f)
{
	return m->buf + m->f[f].off;
}

/* Decodes one message body (no length header) of len bytes. On success
 * fills *ret_msg (views into buf) and returns 0; f[] is set only for the
 * fields present (check tsw_iso_has() first). On failure returns one of
 * -TSW_E_NO_MTI, -TSW_E_BAD_BITMAP, -TSW_E_UNDEFINED_FIELD,
 * -TSW_E_TRUNCATED, -TSW_E_NOT_NUMERIC, -TSW_E_BAD_CHARSET,
 * -TSW_E_FIELD_TOO_LONG, -TSW_E_TRAILING, -TSW_E_FRAME_TOO_BIG, sets
 * ret_msg->err_field (the field at fault; 0 for the MTI, the primary
 * bitmap, trailing bytes and an oversized body; 1 for the secondary
 * bitmap) and leaves the other members unspecified. A secondary bitmap
 * present but all zero is accepted. Reads nothing past buf+len. */
int tsw_iso_decode(const struct tsw_iso_profile *p, const uint8_t *buf, size_t len,
		   struct tsw_iso_msg *ret_msg);

/* A replaced field for encode: data == NULL removes the field; field 0
 * replaces the MTI (len 4). */
struct tsw_iso_edit {
	uint16_t field;
	uint16_t len;
	const uint8_t *data;
};

/* Encodes msg with edits applied (edits may add fields absent from msg;
 * each field at most once in edits, in any order) into out, without
 * length header. Bit 1 (secondary bitmap) is set iff a field above 64 is
 * present. Edit data are the value's wire bytes without the LL/LLL prefix
 * (hex text for b fields of a hex-bitmap profile); they are validated
 * against the profile like decode does. Fields taken from msg are copied
 * as decoded (msg must come from tsw_iso_decode with a profile of the
 * same field table). msg may be NULL to build a message from edits alone.
 * Returns the number of bytes written, or -TSW_E_NO_SPACE,
 * -TSW_E_UNDEFINED_FIELD (field 1, above 128 or not in the profile),
 * -TSW_E_FIELD_TOO_LONG, -TSW_E_NOT_NUMERIC, -TSW_E_BAD_CHARSET,
 * -TSW_E_NO_MTI (no MTI edit without msg, or an MTI edit that is not 4
 * digits), -TSW_E_BAD_INPUT (a fixed field shorter than its length, an odd
 * hex length, a field twice in edits), -TSW_E_FRAME_TOO_BIG (result above
 * p->max_frame). out is unspecified on failure. */
int tsw_iso_encode(const struct tsw_iso_profile *p, const struct tsw_iso_msg *msg,
		   const struct tsw_iso_edit *edits, size_t n_edits, uint8_t *out, size_t cap);

/* Size of the profile's length header (2, 4 or 0). With header "none" the
 * framer returns each input buffer whole as one frame. */
size_t tsw_iso_header_size(const struct tsw_iso_profile *p);

/* The largest body the profile's length header can express: 65535
 * (bin2, and "none", whose views are 16-bit), 9999 (ascii4). A
 * max_frame above it must be refused (tsw_config_check_frame). */
uint32_t tsw_iso_header_max(const struct tsw_iso_profile *p);
/* The header's name as in the profile file: "bin2", "ascii4", "none". */
const char *tsw_iso_header_name(const struct tsw_iso_profile *p);

/* Writes the length header for a body of body_len bytes into out (which
 * has room for tsw_iso_header_size()). Returns 0, or -TSW_E_FRAME_TOO_BIG
 * when body_len is above p->max_frame or above what the header can
 * express (tsw_iso_header_max: never written modulo its range); out is
 * untouched then. */
int tsw_iso_header_write(const struct tsw_iso_profile *p, size_t body_len, uint8_t *out);

/* Incremental frame reader. Bytes may arrive split anywhere and several
 * frames may arrive in one buffer. A frame lying whole inside the caller's
 * input is returned in place; one split across inputs is assembled in the
 * reader's own buffer (max_frame bytes, allocated once at init). Frames
 * carry card data (an issuer link's carry PANs): the bytes a frame used
 * in that buffer are wiped once the caller is done with it (at the next
 * call), and on reset and free. */
struct tsw_iso_framer {
	const struct tsw_iso_profile *p;
	uint8_t *acc;      /* assembly buffer, p->max_frame + 4 bytes */
	uint32_t acc_len;  /* bytes held in acc */
	uint32_t acc_dirty; /* leading bytes of acc written since the last wipe */
	uint32_t need;     /* body length once the header is known, else 0 */
	uint8_t have_hdr;
	uint8_t acc_returned; /* the last frame returned lies in acc */
};

/* Returns 0 or -ENOMEM. p must outlive the framer. */
int tsw_iso_framer_init(struct tsw_iso_framer *fr, const struct tsw_iso_profile *p);
/* Forgets any partial frame (a connection that went away) and wipes what
 * the assembly buffer held; the framer stays usable. */
void tsw_iso_framer_reset(struct tsw_iso_framer *fr);
/* Wipes and frees the assembly buffer and forgets any partial frame; fr
 * may be initialized again. Safe on a zeroed or already freed framer. */
void tsw_iso_framer_free(struct tsw_iso_framer *fr);

/* Consumes input starting at *in_off. Returns 1 with *ret_frame and *ret_len
 * set to a complete body (keep-alive frames are returned with len 0; the
 * pointer is valid until the next call or until the input changes);
 * 0 when all input is consumed and no frame is complete;
 * -TSW_E_FRAME_TOO_BIG or -TSW_E_BAD_HEADER when the stream is broken
 * (the connection must be closed). Call repeatedly until it returns 0. */
int tsw_iso_framer_next(struct tsw_iso_framer *fr, const uint8_t *in, size_t in_len,
			size_t *in_off, const uint8_t **ret_frame, size_t *ret_len);

/* DE48 subelements: 2-digit tag, 2-digit length, value. */
struct tsw_de48_iter {
	const uint8_t *p;
	size_t len, off;
};
/* Returns 1 with tag/value set (the value points into it->p), 0 at the
 * end, -TSW_E_BAD_TLV on malformed data (a short or non-digit tag/length,
 * a value past the end). */
int tsw_de48_next(struct tsw_de48_iter *it, unsigned *ret_tag, const uint8_t **ret_val,
		  size_t *ret_len);
/* Finds tag; returns 1 found, 0 absent, -TSW_E_BAD_TLV. */
int tsw_de48_find(const uint8_t *p, size_t len, unsigned tag, const uint8_t **ret_val,
		  size_t *ret_len);
/* Appends one subelement at out[*off]; returns 0 or -TSW_E_NO_SPACE /
 * -TSW_E_BAD_INPUT (tag > 99 or len > 99). *off advances only on success. */
int tsw_de48_put(uint8_t *out, size_t cap, size_t *off, unsigned tag, const uint8_t *val,
		 size_t len);
/* Appends every subelement of p[0..len) whose tag is outside [lo, hi] at
 * out[*off] (drops tags 30-36 arriving from the acquirer). Returns 0, or
 * -TSW_E_BAD_TLV / -TSW_E_NO_SPACE with *off unchanged (out may hold
 * partial bytes past *off). p and out must not overlap. */
int tsw_de48_copy_except(const uint8_t *p, size_t len, unsigned lo, unsigned hi, uint8_t *out,
			 size_t cap, size_t *off);

/* BER-TLV (DE55). Tags up to 4 bytes returned as their big-endian value
 * (0x9F26), lengths in 1..3-byte definite form. */
struct tsw_tlv_iter {
	const uint8_t *p;
	size_t len, off;
};
/* Returns 1 with the next top-level object (constructed ones are not
 * entered; 0x00 padding is skipped), 0 at the end, -TSW_E_BAD_TLV on a tag
 * longer than 4 bytes, a length in indefinite or >3-byte form, or a value
 * past the end. The value points into p. */
int tsw_tlv_next(struct tsw_tlv_iter *it, uint32_t *ret_tag, const uint8_t **ret_val,
		 size_t *ret_len);
/* Finds a top-level tag; returns 1 found, 0 absent, -TSW_E_BAD_TLV when
 * the data is malformed before the tag is reached. */
int tsw_tlv_find(const uint8_t *p, size_t len, uint32_t tag, const uint8_t **ret_val,
		 size_t *ret_len);

/* Nesting of constructed objects tsw_tlv_copy_except enters. */
#define TSW_TLV_DEPTH_MAX 8
/* Copies the BER-TLV objects of p[0, len) to out (cap bytes), leaving out
 * every object whose tag is one of tags[0, n_tags), at any depth: a
 * constructed object (bit 6 of its first tag byte set: 70, 77, 71, ...)
 * is entered and written with its contents so copied and its length
 * rewritten. Lengths are written in their shortest definite form and
 * 0x00 padding is left out, so even a copy that drops nothing may differ
 * from p byte for byte. Returns the bytes written and the objects left
 * out in *ret_dropped, or -TSW_E_BAD_TLV (malformed at any depth, as
 * tsw_tlv_next says, or nested deeper than TSW_TLV_DEPTH_MAX) or
 * -TSW_E_NO_SPACE; out is unspecified and *ret_dropped untouched then. p
 * and out must not overlap. */
int tsw_tlv_copy_except(const uint8_t *p, size_t len, const uint32_t *tags, size_t n_tags,
			uint8_t *out, size_t cap, unsigned *ret_dropped);

/* Formats a decoded message (decoded with p) for a log line: "mti=0100 f2=411111******1111
 * f4=000000001000 ...", masking DE2 and DE35 (first 6, last 4 kept), DE14
 * fully, DE52/DE55 as their length only, and DE48 subelements 30-36 and 11.
 * Also masked: DE34/DE102/DE103 like DE2, DE36/DE45 (tracks) and every b
 * field as their length only. docs/wire.md has the table.
 * Writes at most cap bytes, NUL-terminated; returns the length written
 * (truncated output ends in "..."; cap 0 writes nothing). */
size_t tsw_iso_format_masked(const struct tsw_iso_profile *p, const struct tsw_iso_msg *m,
			     char *out, size_t cap);

#endif
