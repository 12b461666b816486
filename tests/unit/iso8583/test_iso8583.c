/* ISO 8583 codec: profiles, decode/encode, framing, DE48, BER-TLV, masking. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tsw/error.h"
#include "tsw/iso8583.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MSG_CAP 8192

static struct tsw_iso_profile prof_default, prof_hex, prof_ascii4;

static void load_profiles(void)
{
	cr_assert_eq(tsw_iso_profile_load_named(NULL, "default", &prof_default), 0);
	cr_assert_eq(tsw_iso_profile_load_named(NULL, "hexbitmap", &prof_hex), 0);
	cr_assert_eq(tsw_iso_profile_load_named(NULL, "ascii4", &prof_ascii4), 0);
}

/* ---- profiles ---------------------------------------------------------- */

Test(profile, shipped_profiles_load_with_their_directives, .init = load_profiles)
{
	cr_assert_str_eq(prof_default.name, "default");
	cr_assert_eq(prof_default.header, TSW_ISO_HDR_BIN2);
	cr_assert_eq(prof_default.bitmap, TSW_ISO_BITMAP_BIN);
	cr_assert_eq(prof_default.max_frame, TSW_ISO_MAX_FRAME_DEFAULT);
	cr_assert_eq(prof_hex.header, TSW_ISO_HDR_NONE);
	cr_assert_eq(prof_hex.bitmap, TSW_ISO_BITMAP_HEX);
	cr_assert_eq(prof_ascii4.header, TSW_ISO_HDR_ASCII4);
	cr_assert_eq(tsw_iso_header_size(&prof_default), 2);
	cr_assert_eq(tsw_iso_header_size(&prof_ascii4), 4);
	cr_assert_eq(tsw_iso_header_size(&prof_hex), 0);

	/* DESIGN.md: DE52/DE64/DE128 8 raw bytes, DE55 LLL opaque bytes */
	const unsigned b8[] = {52, 64, 128};
	for (size_t i = 0; i < ARRAY_SIZE(b8); i++) {
		const struct tsw_iso_field_spec *fs = &prof_default.fields[b8[i]];
		cr_assert(fs->defined && fs->type == TSW_ISO_B && fs->len_kind == TSW_ISO_FIXED);
		cr_assert_eq(fs->max_len, 8);
		cr_assert_eq(fs->wire_max, 8);
		cr_assert_eq(prof_hex.fields[b8[i]].wire_max, 16, "hex profile: 2 chars a byte");
	}
	cr_assert_eq(prof_default.fields[55].type, TSW_ISO_B);
	cr_assert_eq(prof_default.fields[55].len_kind, TSW_ISO_LLL);
	cr_assert_eq(prof_default.fields[2].len_kind, TSW_ISO_LL);
	cr_assert_eq(prof_default.fields[2].max_len, 19);
	cr_assert_eq(prof_default.fields[35].type, TSW_ISO_Z);
	cr_assert_not(prof_default.fields[1].defined, "field 1 is the bitmap, not a spec line");
	cr_assert_str_eq(prof_default.fields[11].name, "System trace audit number (STAN)");
}

struct bad_profile_case {
	const char *rule;
	const char *text;
	unsigned line;
};

static const struct bad_profile_case bad_profiles[] = {
    {"unknown directive", "header bin2\nbitmap binary\ncolour red\n", 3},
    {"unknown header kind", "header bin3\nbitmap binary\n", 1},
    {"unknown bitmap kind", "header bin2\nbitmap octal\n", 2},
    {"directive without value", "header\nbitmap binary\n", 1},
    {"directive with two values", "header bin2 ascii4\nbitmap binary\n", 1},
    {"missing header directive", "bitmap binary\n2 n LL 19 PAN\n", 3},
    {"missing bitmap directive", "header bin2\n", 2},
    {"unknown type", "header bin2\nbitmap binary\n2 q LL 19 PAN\n", 3},
    {"unknown length kind", "header bin2\nbitmap binary\n\n2 n LLLL 19 PAN\n", 4},
    {"field 1 is the bitmap", "header bin2\nbitmap binary\n1 b fixed 8 x\n", 3},
    {"field above 128", "header bin2\nbitmap binary\n129 n fixed 3 x\n", 3},
    {"field 0", "header bin2\nbitmap binary\n0 n fixed 4 MTI\n", 3},
    {"duplicate field", "header bin2\nbitmap binary\n3 n fixed 6 a\n3 n fixed 6 b\n", 4},
    {"LL maximum above 99", "header bin2\nbitmap binary\n2 n LL 100 PAN\n", 3},
    {"LLL maximum above 999", "header bin2\nbitmap binary\n48 ans LLL 1000 x\n", 3},
    {"zero length", "header bin2\nbitmap binary\n3 n fixed 0 x\n", 3},
    {"missing max", "header bin2\nbitmap binary\n3 n fixed\n", 3},
    {"max not a number", "header bin2\nbitmap binary\n3 n fixed 6x name\n", 3},
    {"xn must be fixed", "header bin2\nbitmap binary\n28 xn LL 9 fee\n", 3},
    {"max_frame too small", "header bin2\nbitmap binary\nmax_frame 10\n", 3},
    {"max_frame above 65535", "header bin2\nbitmap binary\nmax_frame 65536\n", 3},
    {"ascii4 max_frame above 9999", "header ascii4\nbitmap binary\nmax_frame 10000\n", 4},
    {"fixed field above max_frame", "header bin2\nbitmap binary\nmax_frame 100\n90 n fixed 200 x\n",
     4},
    {"profile name too long",
     "profile aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nheader bin2\nbitmap binary\n", 1},
};

static char *write_temp(const char *text, char *dir_out)
{
	static char path[256];
	FILE *f;

	strcpy(dir_out, "/tmp/tsw-iso-XXXXXX");
	cr_assert_not_null(mkdtemp(dir_out));
	snprintf(path, sizeof(path), "%s/p.spec", dir_out);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void remove_temp(const char *dir, const char *path)
{
	unlink(path);
	rmdir(dir);
}

Test(profile, bad_file_reports_error_and_line)
{
	for (size_t i = 0; i < ARRAY_SIZE(bad_profiles); i++) {
		const struct bad_profile_case *c = &bad_profiles[i];
		struct tsw_iso_profile p, keep;
		unsigned line = 12345;
		char dir[64];
		char *path = write_temp(c->text, dir);

		memset(&p, 0xa5, sizeof(p));
		memcpy(&keep, &p, sizeof(p));
		cr_assert_eq(tsw_iso_profile_load(path, &p, &line), -TSW_E_BAD_PROFILE, "%s",
			     c->rule);
		cr_assert_eq(line, c->line, "%s: line %u, want %u", c->rule, line, c->line);
		cr_assert_eq(memcmp(&p, &keep, sizeof(p)), 0, "%s: profile touched", c->rule);
		remove_temp(dir, path);
	}
}

Test(profile, missing_file_is_enoent_line_zero)
{
	struct tsw_iso_profile p;
	unsigned line = 7;

	cr_assert_eq(tsw_iso_profile_load("/nonexistent/x.spec", &p, &line), -ENOENT);
	cr_assert_eq(line, 0);
	cr_assert_eq(tsw_iso_profile_load_named(NULL, "no-such-profile", &p), -ENOENT);
	cr_assert_eq(tsw_iso_profile_load_named(NULL, "../config/default", &p), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_iso_profile_load_named(NULL, "", &p), -TSW_E_BAD_INPUT);
}

Test(profile, minimal_file_with_comments_and_name_from_file)
{
	struct tsw_iso_profile p;
	char dir[64];
	char *path = write_temp("# comment\n  bitmap hex # trailing\n\theader ascii4\n"
				"max_frame 500\n3  n fixed 6   Processing code  \n"
				"52 b fixed 8 PIN\n2 n LL 19 PAN\n",
				dir);

	cr_assert_eq(tsw_iso_profile_load(path, &p, NULL), 0);
	cr_assert_str_eq(p.name, "p");
	cr_assert_eq(p.max_frame, 500);
	cr_assert_str_eq(p.fields[3].name, "Processing code");
	cr_assert_eq(p.fields[52].wire_max, 16);
	cr_assert_eq(p.fields[52].hex, 1);
	cr_assert_eq(p.fields[2].prefix, 2);
	cr_assert_not(p.fields[4].defined);
	remove_temp(dir, path);
}

/* ---- moov vectors (hexbitmap) ------------------------------------------ */

static size_t read_vector(const char *name, uint8_t *buf, size_t cap)
{
	char path[512];
	const char *root = getenv("TSW_SOURCE_ROOT");
	FILE *f;
	size_t n;

	cr_assert_not_null(root, "TSW_SOURCE_ROOT unset");
	snprintf(path, sizeof(path), "%s/tests/unit/iso8583/vectors/%s", root, name);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

struct want_field {
	unsigned f;
	const char *value;
};

struct vector_case {
	const char *file;
	const char *mti;
	struct want_field want[6];
};

/* Where the files disagree with the standard 1987 table: DE55 in the 0400
 * and 0410 is text, not BER-TLV bytes (the 0410's ends in a space), so the
 * hexbitmap profile reads DE55 as ans...999 like moov's own table; the
 * default profile keeps DE55 as LLL binary. DE48 of the 0400/0410 is not in
 * the DE48 subelement layout either (it is opaque here), and DE32 is sent
 * with length 00. */
static const struct vector_case vectors[] = {
    {"network_management_message.dat", "0800", {{7, "0420090613"}, {11, "900001"}, {70, "001"}}},
    {"network_management_message_response.dat",
     "0810",
     {{7, "0420090613"}, {11, "900001"}, {39, "00"}, {70, "001"}}},
    {"financial_transaction_message.dat",
     "0200",
     {{3, "380000"}, {11, "011392"}, {32, "2000001"}, {42, "0800411        "}, {60, "99"}}},
    {"financial_transaction_message_response.dat",
     "0210",
     {{3, "380000"}, {11, "011392"}, {39, "00"}, {49, "130"}, {60, "1B54391001"}}},
    {"iso_reversal_message.dat",
     "0400",
     {{2, "1111111110000000000"},
      {4, "000000030000"},
      {32, ""},
      {90, "020000331609080645190000000020000000000000"}}},
    {"iso_reversal_message_response.dat",
     "0410",
     {{39, "00"},
      {55, "00331700039480908064651000000 "},
      {63, ""},
      {90, "313202000033160908064519000000002000000000"}}},
};

static void assert_field(const struct tsw_iso_msg *m, unsigned f, const char *want, const char *ctx)
{
	size_t n = strlen(want);

	cr_assert(tsw_iso_has(m, f), "%s: DE%u absent", ctx, f);
	cr_assert_eq(m->f[f].len, n, "%s: DE%u length %u, want %zu", ctx, f, m->f[f].len, n);
	cr_assert_eq(memcmp(tsw_iso_ptr(m, f), want, n), 0, "%s: DE%u value", ctx, f);
}

Test(vectors, moov_files_decode_check_and_reencode_byte_for_byte, .init = load_profiles)
{
	for (size_t i = 0; i < ARRAY_SIZE(vectors); i++) {
		const struct vector_case *c = &vectors[i];
		uint8_t buf[1024], out[1024];
		struct tsw_iso_msg m;
		size_t n = read_vector(c->file, buf, sizeof(buf));
		int r;

		r = tsw_iso_decode(&prof_hex, buf, n, &m);
		cr_assert_eq(r, 0, "%s: %s (DE%d)", c->file, tsw_strerror(r), m.err_field);
		cr_assert_eq(memcmp(m.mti, c->mti, 4), 0, "%s: MTI", c->file);
		for (size_t k = 0; k < ARRAY_SIZE(c->want) && c->want[k].f; k++)
			assert_field(&m, c->want[k].f, c->want[k].value, c->file);
		r = tsw_iso_encode(&prof_hex, &m, NULL, 0, out, sizeof(out));
		cr_assert_eq(r, (int)n, "%s: re-encoded %d bytes, want %zu", c->file, r, n);
		cr_assert_eq(memcmp(out, buf, n), 0, "%s: re-encoded bytes differ", c->file);
	}
}

Test(vectors, reversal_has_secondary_bitmap, .init = load_profiles)
{
	uint8_t buf[1024];
	struct tsw_iso_msg m;
	size_t n = read_vector("iso_reversal_message.dat", buf, sizeof(buf));

	cr_assert_eq(tsw_iso_decode(&prof_hex, buf, n, &m), 0);
	cr_assert(tsw_iso_has(&m, 1));
	cr_assert(tsw_iso_has(&m, 90));
	cr_assert_neq(m.bitmap[1], 0);
}

/* ---- building messages in the default profile --------------------------- */

struct fv {
	unsigned f;
	const char *v; /* NUL-terminated; binary values use len */
	unsigned len;
};

/* Writes MTI + binary bitmap(s) + the fields (prefixes included) in field
 * order, the raw way, without the codec: the reference for decode tests. */
static size_t raw_msg(const struct tsw_iso_profile *p, const char *mti, const struct fv *fields,
		      size_t n, uint8_t *out)
{
	uint64_t bm[2] = {0, 0};
	size_t pos = 4;

	memcpy(out, mti, 4);
	for (size_t i = 0; i < n; i++) {
		unsigned f = fields[i].f;
		bm[(f - 1) / 64] |= 1ull << (63 - (f - 1) % 64);
	}
	if (bm[1])
		bm[0] |= 1ull << 63;
	for (unsigned w = 0; w < (bm[1] ? 2u : 1u); w++)
		for (int b = 7; b >= 0; b--)
			out[pos++] = (uint8_t)(bm[w] >> (8 * b));
	for (unsigned f = 2; f <= 128; f++) {
		for (size_t i = 0; i < n; i++) {
			const struct tsw_iso_field_spec *fs = &p->fields[f];
			size_t len;

			if (fields[i].f != f)
				continue;
			len = fields[i].len ? fields[i].len : strlen(fields[i].v);
			if (fs->prefix == 2)
				pos += (size_t)sprintf((char *)out + pos, "%02zu", len);
			else if (fs->prefix == 3)
				pos += (size_t)sprintf((char *)out + pos, "%03zu", len);
			memcpy(out + pos, fields[i].v, len);
			pos += len;
		}
	}
	return pos;
}

static const struct fv auth_0100[] = {
    {2, "4895370012345678", 0},
    {3, "000000", 0},
    {4, "000000012500", 0},
    {7, "1123101530", 0},
    {11, "123456", 0},
    {14, "2712", 0},
    {18, "5411", 0},
    {22, "071", 0},
    {32, "123456", 0},
    {35, "4895370012345678=27121011234500000", 0},
    {37, "332710123456", 0},
    {41, "TERM0001", 0},
    {42, "MERCHANT0000001", 0},
    {48, "1008DEVICE01110828A1B2C3", 0},
    {49, "978", 0},
    {55, "\x9f\x26\x08\x01\x02\x03\x04\x05\x06\x07\x08\x9f\x36\x02\x00\x2a", 16},
};

Test(decode, valid_0100_gives_views_into_the_buffer, .init = load_profiles)
{
	uint8_t buf[1024];
	struct tsw_iso_msg m;
	size_t n = raw_msg(&prof_default, "0100", auth_0100, ARRAY_SIZE(auth_0100), buf);

	cr_assert_eq(tsw_iso_decode(&prof_default, buf, n, &m), 0);
	cr_assert_eq(memcmp(m.mti, "0100", 4), 0);
	cr_assert_eq(m.buf, buf);
	for (size_t i = 0; i < ARRAY_SIZE(auth_0100); i++) {
		const struct fv *e = &auth_0100[i];
		size_t len = e->len ? e->len : strlen(e->v);

		cr_assert(tsw_iso_has(&m, e->f));
		cr_assert_eq(m.f[e->f].len, len, "DE%u", e->f);
		cr_assert_eq(memcmp(tsw_iso_ptr(&m, e->f), e->v, len), 0, "DE%u", e->f);
	}
	cr_assert_not(tsw_iso_has(&m, 1));
	cr_assert_not(tsw_iso_has(&m, 39));
	cr_assert_not(tsw_iso_has(&m, 0));
	cr_assert_not(tsw_iso_has(&m, 129));
}

Test(decode, secondary_bitmap_present_but_zero_is_accepted, .init = load_profiles)
{
	uint8_t buf[64] = "0800";
	struct tsw_iso_msg m;
	size_t n = 4;
	const uint8_t bm[16] = {0xa2, 0, 0, 0, 0, 0, 0, 0}; /* fields 1, 3, 7, rest 0 */

	memcpy(buf + n, bm, 16);
	n += 16;
	memcpy(buf + n, "990000", 6);
	n += 6;
	memcpy(buf + n, "1123101530", 10);
	n += 10;
	cr_assert_eq(tsw_iso_decode(&prof_default, buf, n, &m), 0);
	cr_assert(tsw_iso_has(&m, 7));
	cr_assert_eq(m.bitmap[1], 0);
}

struct bad_case {
	const char *rule;
	const char *mti;
	struct fv fields[4];
	int cut;      /* bytes removed from the end (truncation) */
	int append;   /* extra bytes appended */
	int patch_at; /* when >= 0: buf[patch_at] = patch */
	uint8_t patch;
	int err;
	int err_field;
};

/* Offsets: MTI 0..3, primary bitmap 4..11, first field at 12. */
/* clang-format off */
static const struct bad_case bad_inputs[] = {
	{"MTI not digits", "01X0", {{3, "000000", 0}}, 0, 0, -1, 0, -TSW_E_NO_MTI, 0},
	{"bitmap cut short", "0100", {{3, "000000", 0}}, 0, 0, -1, 0, -TSW_E_TRUNCATED, 0},
	{"fixed field cut short", "0100", {{3, "000000", 0}}, 2, 0, -1, 0, -TSW_E_TRUNCATED, 3},
	{"non-digit in n field", "0100", {{3, "0000A0", 0}}, 0, 0, -1, 0, -TSW_E_NOT_NUMERIC, 3},
	{"non-digit in LL prefix", "0100", {{2, "4111111111111111", 0}}, 0, 0, 12, 'x',
	 -TSW_E_NOT_NUMERIC, 2},
	{"LL length above the field maximum", "0100", {{2, "4111111111111111", 0}}, 0, 0, 12, '2',
	 -TSW_E_FIELD_TOO_LONG, 2},
	{"LL length one above the maximum", "0100", {{2, "41111111111111111111", 0}}, 0, 0, -1, 0,
	 -TSW_E_FIELD_TOO_LONG, 2},
	{"LLL length one above the maximum", "0100", {{54, "0123456789012345678901234567890123456789"
	 "0123456789012345678901234567890123456789" "0123456789012345678901234567890123456789A", 0}},
	 0, 0, -1, 0, -TSW_E_FIELD_TOO_LONG, 54},
	{"LL length beyond the frame", "0100", {{2, "4111111111111111", 0}}, 3, 0, -1, 0,
	 -TSW_E_TRUNCATED, 2},
	{"LL prefix cut", "0100", {{2, "41", 0}}, 3, 0, -1, 0, -TSW_E_TRUNCATED, 2},
	{"LLL length above the field maximum", "0100", {{54, "1002AB", 0}}, 0, 0, 12, '2',
	 -TSW_E_FIELD_TOO_LONG, 54},
	{"trailing bytes", "0100", {{3, "000000", 0}}, 0, 3, -1, 0, -TSW_E_TRAILING, 0},
	{"bit 1 set without a secondary bitmap", "0100", {{3, "000000", 0}}, 0, 0, 4, 0x80 | 0x20,
	 -TSW_E_TRUNCATED, 1},
	{"an field with punctuation", "0110", {{39, "0!", 0}}, 0, 0, -1, 0, -TSW_E_BAD_CHARSET, 39},
	{"ans field with a control byte", "0100", {{41, "TERM\n001", 0}}, 0, 0, -1, 0,
	 -TSW_E_BAD_CHARSET, 41},
	{"ans field with a high byte", "0100", {{41, "TERM\xc3\xa9" "01", 0}}, 0, 0, -1, 0,
	 -TSW_E_BAD_CHARSET, 41},
	{"z field with a letter", "0100", {{35, "4111111111111111=2712X", 0}}, 0, 0, -1, 0,
	 -TSW_E_BAD_CHARSET, 35},
	{"xn field without sign", "0100", {{28, "000000100", 0}}, 0, 0, -1, 0, -TSW_E_BAD_CHARSET, 28},
	{"xn field with letters", "0100", {{28, "C0000010A", 0}}, 0, 0, -1, 0, -TSW_E_NOT_NUMERIC, 28},
	{"second field cut", "0100", {{3, "000000", 0}, {4, "000000012500", 0}}, 1, 0, -1, 0,
	 -TSW_E_TRUNCATED, 4},
	{"secondary bitmap cut", "0400", {{90, "020000331609080645190000000020000000000000", 0}},
	 50, 0, -1, 0, -TSW_E_TRUNCATED, 1},
};
/* clang-format on */

Test(decode, bad_input_gets_exact_error_and_field, .init = load_profiles)
{
	for (size_t i = 0; i < ARRAY_SIZE(bad_inputs); i++) {
		const struct bad_case *c = &bad_inputs[i];
		uint8_t buf[512];
		struct tsw_iso_msg m;
		size_t nf = 0, n;
		uint8_t *heap;
		int r;

		while (nf < ARRAY_SIZE(c->fields) && c->fields[nf].f)
			nf++;
		n = raw_msg(&prof_default, c->mti, c->fields, nf, buf);
		if (strcmp(c->rule, "bitmap cut short") == 0)
			n = 9;
		n -= (size_t)c->cut;
		for (int k = 0; k < c->append; k++)
			buf[n++] = '0';
		if (c->patch_at >= 0)
			buf[c->patch_at] = c->patch;
		/* exact-size heap copy: ASan catches any read past the end */
		heap = malloc(n);
		memcpy(heap, buf, n);
		r = tsw_iso_decode(&prof_default, heap, n, &m);
		cr_assert_eq(r, c->err, "%s: got %d (%s), want %s", c->rule, r, tsw_strerror(r),
			     tsw_strerror(c->err));
		cr_assert_eq(m.err_field, c->err_field, "%s: err_field %d, want %d", c->rule,
			     m.err_field, c->err_field);
		free(heap);
	}
}

Test(decode, undefined_field_and_frame_limits, .init = load_profiles)
{
	struct tsw_iso_profile p = prof_default;
	uint8_t buf[64];
	struct tsw_iso_msg m;
	const struct fv f3[] = {{3, "000000", 0}};
	size_t n = raw_msg(&p, "0100", f3, 1, buf);

	p.fields[3].defined = 0;
	cr_assert_eq(tsw_iso_decode(&p, buf, n, &m), -TSW_E_UNDEFINED_FIELD);
	cr_assert_eq(m.err_field, 3);

	p = prof_default;
	p.max_frame = (uint32_t)n - 1;
	cr_assert_eq(tsw_iso_decode(&p, buf, n, &m), -TSW_E_FRAME_TOO_BIG);

	cr_assert_eq(tsw_iso_decode(&prof_default, buf, 3, &m), -TSW_E_NO_MTI);
	cr_assert_eq(tsw_iso_decode(&prof_default, buf, 0, &m), -TSW_E_NO_MTI);
}

Test(decode, hex_bitmap_and_hex_b_fields, .init = load_profiles)
{
	struct tsw_iso_msg m;
	const char *badbm = "0100"
			    "40000000000010G0";
	const char *badb = "0100"
			   "0000000000001000"
			   "010203040506070Z";

	/* field 2 with LL "00" then DE52 as 16 hex characters */
	const char *ok2 = "0100"
			  "4000000000001000"
			  "00"
			  "0102030405060708";
	cr_assert_eq(tsw_iso_decode(&prof_hex, (const uint8_t *)ok2, strlen(ok2), &m), 0);
	cr_assert_eq(m.f[52].len, 16);
	cr_assert_eq(m.f[2].len, 0);
	cr_assert_eq(tsw_iso_decode(&prof_hex, (const uint8_t *)badbm, strlen(badbm), &m),
		     -TSW_E_BAD_BITMAP);
	cr_assert_eq(m.err_field, 0);
	cr_assert_eq(tsw_iso_decode(&prof_hex, (const uint8_t *)badb, strlen(badb), &m),
		     -TSW_E_BAD_CHARSET);
	cr_assert_eq(m.err_field, 52);
}

/* ---- encode ------------------------------------------------------------ */

static int decode_raw(const struct tsw_iso_profile *p, const struct fv *f, size_t n, uint8_t *buf,
		      struct tsw_iso_msg *m)
{
	size_t len = raw_msg(p, "0100", f, n, buf);

	return tsw_iso_decode(p, buf, len, m);
}

Test(encode, replace_token_and_expiry_keeps_every_other_byte, .init = load_profiles)
{
	uint8_t in[1024], out[1024], want[1024];
	struct tsw_iso_msg m;
	struct fv swapped[ARRAY_SIZE(auth_0100)];
	const struct tsw_iso_edit edits[] = {
	    {2, 19, (const uint8_t *)"5500000000000000004"},
	    {14, 4, (const uint8_t *)"2901"},
	};
	int r;
	size_t wn;

	cr_assert_eq(decode_raw(&prof_default, auth_0100, ARRAY_SIZE(auth_0100), in, &m), 0);
	memcpy(swapped, auth_0100, sizeof(swapped));
	swapped[0].v = "5500000000000000004";
	swapped[5].v = "2901";
	wn = raw_msg(&prof_default, "0100", swapped, ARRAY_SIZE(swapped), want);
	r = tsw_iso_encode(&prof_default, &m, edits, ARRAY_SIZE(edits), out, sizeof(out));
	cr_assert_eq(r, (int)wn);
	cr_assert_eq(memcmp(out, want, wn), 0);
}

Test(encode, add_remove_fields_and_replace_mti, .init = load_profiles)
{
	uint8_t in[1024], out[1024];
	struct tsw_iso_msg m, d;
	const struct tsw_iso_edit edits[] = {
	    {0, 4, (const uint8_t *)"0110"},
	    {35, 0, NULL},
	    {55, 0, NULL},
	    {39, 2, (const uint8_t *)"05"},
	    {44, 13, (const uint8_t *)"TOKEN_UNKNOWN"},
	    {90, 42, (const uint8_t *)"010012345611231015300000012345600000000000"},
	};
	int r;

	cr_assert_eq(decode_raw(&prof_default, auth_0100, ARRAY_SIZE(auth_0100), in, &m), 0);
	r = tsw_iso_encode(&prof_default, &m, edits, ARRAY_SIZE(edits), out, sizeof(out));
	cr_assert_gt(r, 0, "%s", tsw_strerror(r));
	cr_assert_eq(tsw_iso_decode(&prof_default, out, (size_t)r, &d), 0);
	cr_assert_eq(memcmp(d.mti, "0110", 4), 0);
	cr_assert_not(tsw_iso_has(&d, 35));
	cr_assert_not(tsw_iso_has(&d, 55));
	cr_assert(tsw_iso_has(&d, 1), "DE90 needs the secondary bitmap");
	assert_field(&d, 39, "05", "encode");
	assert_field(&d, 44, "TOKEN_UNKNOWN", "encode");
	assert_field(&d, 2, "4895370012345678", "encode");
	assert_field(&d, 48, "1008DEVICE01110828A1B2C3", "encode");

	/* removing DE90 again drops the secondary bitmap */
	const struct tsw_iso_edit drop90[] = {{90, 0, NULL}};
	struct tsw_iso_msg d2;
	uint8_t out2[1024];
	r = tsw_iso_encode(&prof_default, &d, drop90, 1, out2, sizeof(out2));
	cr_assert_gt(r, 0);
	cr_assert_eq(tsw_iso_decode(&prof_default, out2, (size_t)r, &d2), 0);
	cr_assert_not(tsw_iso_has(&d2, 1));
	cr_assert_eq(d2.bitmap[1], 0);
}

Test(encode, from_edits_alone, .init = load_profiles)
{
	uint8_t out[256];
	struct tsw_iso_msg d;
	const struct tsw_iso_edit edits[] = {
	    {11, 6, (const uint8_t *)"000042"},
	    {0, 4, (const uint8_t *)"0800"},
	    {70, 3, (const uint8_t *)"301"},
	    {7, 10, (const uint8_t *)"1123101530"},
	};
	int r = tsw_iso_encode(&prof_ascii4, NULL, edits, ARRAY_SIZE(edits), out, sizeof(out));

	cr_assert_eq(r, 4 + 16 + 6 + 3 + 10);
	cr_assert_eq(tsw_iso_decode(&prof_ascii4, out, (size_t)r, &d), 0);
	assert_field(&d, 70, "301", "0800");
	assert_field(&d, 7, "1123101530", "0800");
}

struct bad_edit_case {
	const char *rule;
	struct tsw_iso_edit e[2];
	size_t n;
	int err;
};

static const struct bad_edit_case bad_edits[] = {
    {"no MTI without a message", {{3, 6, (const uint8_t *)"000000"}}, 1, -TSW_E_NO_MTI},
    {"MTI not 4 digits", {{0, 3, (const uint8_t *)"010"}}, 1, -TSW_E_NO_MTI},
    {"MTI with a letter", {{0, 4, (const uint8_t *)"01a0"}}, 1, -TSW_E_NO_MTI},
    {"field 1 is computed",
     {{0, 4, (const uint8_t *)"0100"}, {1, 8, (const uint8_t *)"00000000"}},
     2,
     -TSW_E_UNDEFINED_FIELD},
    {"field above 128",
     {{0, 4, (const uint8_t *)"0100"}, {129, 1, (const uint8_t *)"0"}},
     2,
     -TSW_E_UNDEFINED_FIELD},
    {"n field with a letter",
     {{0, 4, (const uint8_t *)"0100"}, {3, 6, (const uint8_t *)"00000x"}},
     2,
     -TSW_E_NOT_NUMERIC},
    {"fixed field too long",
     {{0, 4, (const uint8_t *)"0100"}, {3, 7, (const uint8_t *)"0000000"}},
     2,
     -TSW_E_FIELD_TOO_LONG},
    {"fixed field too short",
     {{0, 4, (const uint8_t *)"0100"}, {3, 5, (const uint8_t *)"00000"}},
     2,
     -TSW_E_BAD_INPUT},
    {"LL field above maximum",
     {{0, 4, (const uint8_t *)"0100"}, {2, 20, (const uint8_t *)"41111111111111111111"}},
     2,
     -TSW_E_FIELD_TOO_LONG},
    {"an field with punctuation",
     {{0, 4, (const uint8_t *)"0110"}, {39, 2, (const uint8_t *)"0-"}},
     2,
     -TSW_E_BAD_CHARSET},
    {"same field twice",
     {{3, 6, (const uint8_t *)"000000"}, {3, 6, (const uint8_t *)"000000"}},
     2,
     -TSW_E_BAD_INPUT},
};

Test(encode, bad_edits_get_exact_errors, .init = load_profiles)
{
	for (size_t i = 0; i < ARRAY_SIZE(bad_edits); i++) {
		const struct bad_edit_case *c = &bad_edits[i];
		uint8_t out[256];
		int r = tsw_iso_encode(&prof_default, NULL, c->e, c->n, out, sizeof(out));

		cr_assert_eq(r, c->err, "%s: got %d (%s)", c->rule, r, tsw_strerror(r));
	}
}

Test(encode, output_too_small_at_every_size, .init = load_profiles)
{
	uint8_t in[1024], out[1024];
	struct tsw_iso_msg m;
	const struct tsw_iso_edit edits[] = {{2, 16, (const uint8_t *)"5500000000000004"}};
	int full;

	cr_assert_eq(decode_raw(&prof_default, auth_0100, ARRAY_SIZE(auth_0100), in, &m), 0);
	full = tsw_iso_encode(&prof_default, &m, edits, 1, out, sizeof(out));
	cr_assert_gt(full, 0);
	for (int cap = 0; cap < full; cap++) {
		uint8_t *heap = malloc((size_t)cap + 1);

		cr_assert_eq(tsw_iso_encode(&prof_default, &m, edits, 1, heap, (size_t)cap),
			     -TSW_E_NO_SPACE, "cap %d", cap);
		free(heap);
	}
}

Test(encode, hex_profile_b_fields_are_hex_text, .init = load_profiles)
{
	uint8_t out[256];
	struct tsw_iso_msg d;
	const struct tsw_iso_edit good[] = {
	    {0, 4, (const uint8_t *)"0100"},
	    {52, 16, (const uint8_t *)"0123456789ABCDEF"},
	};
	const struct tsw_iso_edit bad[] = {
	    {0, 4, (const uint8_t *)"0100"},
	    {52, 16, (const uint8_t *)"0123456789ABCDEG"},
	};
	int r = tsw_iso_encode(&prof_hex, NULL, good, 2, out, sizeof(out));

	cr_assert_eq(r, 4 + 16 + 16);
	cr_assert_eq(memcmp(out,
			    "0100"
			    "0000000000001000"
			    "0123456789ABCDEF",
			    36),
		     0);
	cr_assert_eq(tsw_iso_decode(&prof_hex, out, (size_t)r, &d), 0);
	cr_assert_eq(tsw_iso_encode(&prof_hex, NULL, bad, 2, out, sizeof(out)), -TSW_E_BAD_CHARSET);
}

/* ---- random round trips ------------------------------------------------- */

#define ROUNDTRIP_MESSAGES 400
#define ROUNDTRIP_VALUE_MAX 40

static uint64_t rng_state;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

static uint8_t rnd_char(const struct tsw_iso_field_spec *fs, size_t i)
{
	static const char an[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ";
	static const char z[] = "0123456789=D";
	static const char hex[] = "0123456789ABCDEFabcdef";

	switch ((enum tsw_iso_type)fs->type) {
	case TSW_ISO_N:
		return (uint8_t)('0' + rnd() % 10);
	case TSW_ISO_AN:
		return (uint8_t)an[rnd() % (sizeof(an) - 1)];
	case TSW_ISO_ANS:
		return (uint8_t)(0x20 + rnd() % 95);
	case TSW_ISO_Z:
		return (uint8_t)z[rnd() % (sizeof(z) - 1)];
	case TSW_ISO_XN:
		return i == 0 ? (rnd() & 1 ? 'C' : 'D') : (uint8_t)('0' + rnd() % 10);
	case TSW_ISO_B:
		return fs->hex ? (uint8_t)hex[rnd() % (sizeof(hex) - 1)] : (uint8_t)rnd();
	case TSW_ISO_TYPE_MAX:
		break;
	}
	return '0';
}

/* A random valid value for fs into v; returns its wire length. */
static size_t rnd_value(const struct tsw_iso_field_spec *fs, uint8_t *v)
{
	size_t len, max = fs->max_len < ROUNDTRIP_VALUE_MAX ? fs->max_len : ROUNDTRIP_VALUE_MAX;

	if (fs->len_kind == TSW_ISO_FIXED) {
		len = fs->wire_max;
	} else {
		len = rnd() % (max + 1);
		if (fs->hex)
			len *= 2;
	}
	for (size_t i = 0; i < len; i++)
		v[i] = rnd_char(fs, i);
	return len;
}

/* Random edits (replace, add, remove, MTI) applied by encode to a decoded
 * message give the same bytes as the resulting message built from
 * scratch. */
static void edits_match_scratch(const struct tsw_iso_profile *p, const struct tsw_iso_msg *m, int k)
{
	static uint8_t newv[TSW_ISO_FIELDS][2 * 999];
	static uint8_t a[MSG_CAP], b[MSG_CAP];
	struct tsw_iso_edit ed[TSW_ISO_FIELDS], full[TSW_ISO_FIELDS];
	size_t ned = 0, nfull = 0;
	char mti[4];
	int ra, rb;

	for (int i = 0; i < 4; i++)
		mti[i] = (char)('0' + rnd() % 10);
	if (rnd() & 1) {
		ed[ned++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)mti};
		full[nfull++] = ed[0];
	} else {
		full[nfull++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)m->mti};
	}
	for (unsigned f = 2; f < TSW_ISO_FIELDS; f++) {
		const struct tsw_iso_field_spec *fs = &p->fields[f];
		unsigned dice = rnd() % 100;

		if (!fs->defined)
			continue;
		if (dice < 8) {
			ed[ned++] = (struct tsw_iso_edit){(uint16_t)f, 0, NULL};
		} else if (dice < 16) {
			size_t len = rnd_value(fs, newv[f]);

			ed[ned++] = (struct tsw_iso_edit){(uint16_t)f, (uint16_t)len, newv[f]};
			full[nfull++] = ed[ned - 1];
		} else if (tsw_iso_has(m, f)) {
			full[nfull++] =
			    (struct tsw_iso_edit){(uint16_t)f, m->f[f].len, tsw_iso_ptr(m, f)};
		}
	}
	for (size_t i = ned; i > 1; i--) {
		size_t j = rnd() % i;
		struct tsw_iso_edit t = ed[i - 1];
		ed[i - 1] = ed[j];
		ed[j] = t;
	}
	ra = tsw_iso_encode(p, m, ed, ned, a, sizeof(a));
	rb = tsw_iso_encode(p, NULL, full, nfull, b, sizeof(b));
	cr_assert_gt(rb, 0, "%s msg %d: %s", p->name, k, tsw_strerror(rb));
	cr_assert_eq(ra, rb, "%s msg %d: edited %d bytes, scratch %d", p->name, k, ra, rb);
	cr_assert_eq(memcmp(a, b, (size_t)ra), 0, "%s msg %d: edited bytes differ", p->name, k);
}

static void roundtrip_profile(const struct tsw_iso_profile *p, uint64_t seed)
{
	static uint8_t values[TSW_ISO_FIELDS][2 * 999];
	uint8_t out[MSG_CAP], out2[MSG_CAP];
	struct tsw_iso_edit edits[TSW_ISO_FIELDS];

	rng_state = seed;
	for (int k = 0; k < ROUNDTRIP_MESSAGES; k++) {
		struct tsw_iso_msg m;
		char mti[4];
		size_t ne = 0;
		int r, r2;

		for (int i = 0; i < 4; i++)
			mti[i] = (char)('0' + rnd() % 10);
		edits[ne++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)mti};
		for (unsigned f = 2; f < TSW_ISO_FIELDS; f++) {
			const struct tsw_iso_field_spec *fs = &p->fields[f];
			size_t len;

			if (!fs->defined || rnd() % 100 >= 15)
				continue;
			len = rnd_value(fs, values[f]);
			edits[ne++] = (struct tsw_iso_edit){(uint16_t)f, (uint16_t)len, values[f]};
		}
		/* shuffle: edit order must not matter */
		for (size_t i = ne - 1; i > 0; i--) {
			size_t j = rnd() % (i + 1);
			struct tsw_iso_edit t = edits[i];
			edits[i] = edits[j];
			edits[j] = t;
		}
		r = tsw_iso_encode(p, NULL, edits, ne, out, sizeof(out));
		cr_assert_gt(r, 0, "%s msg %d: %s", p->name, k, tsw_strerror(r));
		r2 = tsw_iso_decode(p, out, (size_t)r, &m);
		cr_assert_eq(r2, 0, "%s msg %d: %s DE%d", p->name, k, tsw_strerror(r2),
			     m.err_field);
		cr_assert_eq(memcmp(m.mti, mti, 4), 0);
		for (size_t i = 0; i < ne; i++) {
			unsigned f = edits[i].field;

			if (f == 0)
				continue;
			cr_assert(tsw_iso_has(&m, f), "%s msg %d DE%u", p->name, k, f);
			cr_assert_eq(m.f[f].len, edits[i].len);
			cr_assert_eq(memcmp(tsw_iso_ptr(&m, f), edits[i].data, edits[i].len), 0);
		}
		for (unsigned f = 2; f < TSW_ISO_FIELDS; f++) {
			bool want = false;
			for (size_t i = 0; i < ne; i++)
				want = want || edits[i].field == f;
			cr_assert_eq(tsw_iso_has(&m, f), want, "%s msg %d DE%u", p->name, k, f);
		}
		r2 = tsw_iso_encode(p, &m, NULL, 0, out2, sizeof(out2));
		cr_assert_eq(r2, r);
		cr_assert_eq(memcmp(out, out2, (size_t)r), 0, "%s msg %d re-encode", p->name, k);
		edits_match_scratch(p, &m, k);
	}
}

Test(roundtrip, random_messages_encode_decode_equal_in_every_profile, .init = load_profiles)
{
	roundtrip_profile(&prof_default, 0x9e3779b97f4a7c15ull);
	roundtrip_profile(&prof_hex, 0x243f6a8885a308d3ull);
	roundtrip_profile(&prof_ascii4, 0x13198a2e03707344ull);
}

/* ---- framing ------------------------------------------------------------ */

struct frame_list {
	uint8_t data[8][600];
	size_t len[8];
	size_t n;
};

static void collect(struct tsw_iso_framer *fr, const uint8_t *in, size_t len,
		    struct frame_list *got)
{
	size_t off = 0;
	const uint8_t *f;
	size_t flen;
	int r;

	while ((r = tsw_iso_framer_next(fr, in, len, &off, &f, &flen)) == 1) {
		cr_assert_lt(got->n, ARRAY_SIZE(got->len));
		memcpy(got->data[got->n], f, flen);
		got->len[got->n++] = flen;
	}
	cr_assert_eq(r, 0, "framer error %s", tsw_strerror(r));
	cr_assert_eq(off, len, "input not consumed");
}

/* builds: msg A, keep-alive, msg B (long), keep-alive, msg C */
static size_t build_stream(const struct tsw_iso_profile *p, uint8_t *s, struct frame_list *want)
{
	const size_t sizes[] = {31, 0, 517, 0, 1};
	size_t pos = 0, hs = tsw_iso_header_size(p);

	want->n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		cr_assert_eq(tsw_iso_header_write(p, sizes[i], s + pos), 0);
		pos += hs;
		for (size_t k = 0; k < sizes[i]; k++)
			want->data[want->n][k] = s[pos + k] = (uint8_t)(i * 37 + k);
		want->len[want->n++] = sizes[i];
		pos += sizes[i];
	}
	return pos;
}

static void assert_same_frames(const struct frame_list *got, const struct frame_list *want,
			       const char *ctx)
{
	cr_assert_eq(got->n, want->n, "%s: %zu frames, want %zu", ctx, got->n, want->n);
	for (size_t i = 0; i < want->n; i++) {
		cr_assert_eq(got->len[i], want->len[i], "%s frame %zu", ctx, i);
		cr_assert_eq(memcmp(got->data[i], want->data[i], want->len[i]), 0, "%s frame %zu",
			     ctx, i);
	}
}

static void split_everywhere(const struct tsw_iso_profile *p)
{
	static struct frame_list want, got;
	uint8_t stream[2048];
	size_t n = build_stream(p, stream, &want);
	struct tsw_iso_framer fr;

	/* one split point */
	for (size_t cut = 0; cut <= n; cut++) {
		cr_assert_eq(tsw_iso_framer_init(&fr, p), 0);
		got.n = 0;
		collect(&fr, stream, cut, &got);
		collect(&fr, stream + cut, n - cut, &got);
		assert_same_frames(&got, &want, p->name);
		tsw_iso_framer_free(&fr);
	}
	/* two split points around the header of the long frame */
	for (size_t a = 0; a < 60; a++) {
		for (size_t b = a; b < 60; b++) {
			cr_assert_eq(tsw_iso_framer_init(&fr, p), 0);
			got.n = 0;
			collect(&fr, stream, a, &got);
			collect(&fr, stream + a, b - a, &got);
			collect(&fr, stream + b, n - b, &got);
			assert_same_frames(&got, &want, p->name);
			tsw_iso_framer_free(&fr);
		}
	}
	/* byte by byte */
	cr_assert_eq(tsw_iso_framer_init(&fr, p), 0);
	got.n = 0;
	for (size_t i = 0; i < n; i++)
		collect(&fr, stream + i, 1, &got);
	assert_same_frames(&got, &want, p->name);
	tsw_iso_framer_free(&fr);
}

Test(framer, every_split_point_gives_the_same_frames, .init = load_profiles)
{
	split_everywhere(&prof_default);
	split_everywhere(&prof_ascii4);
}

Test(framer, whole_frame_is_returned_in_place, .init = load_profiles)
{
	uint8_t s[16] = {0, 3, 'a', 'b', 'c', 0, 0};
	struct tsw_iso_framer fr;
	const uint8_t *f;
	size_t off = 0, len;

	cr_assert_eq(tsw_iso_framer_init(&fr, &prof_default), 0);
	cr_assert_eq(tsw_iso_framer_next(&fr, s, 7, &off, &f, &len), 1);
	cr_assert_eq(f, s + 2);
	cr_assert_eq(len, 3);
	cr_assert_eq(tsw_iso_framer_next(&fr, s, 7, &off, &f, &len), 1);
	cr_assert_eq(len, 0, "keep-alive");
	cr_assert_eq(tsw_iso_framer_next(&fr, s, 7, &off, &f, &len), 0);
	tsw_iso_framer_free(&fr);
}

Test(framer, broken_headers_are_refused, .init = load_profiles)
{
	struct tsw_iso_framer fr;
	const uint8_t *f;
	size_t off, len;
	const uint8_t big[] = {0x20, 0x01}; /* 8193 > 8192 */
	const uint8_t max[] = {0x20, 0x00};
	const uint8_t *bad_ascii = (const uint8_t *)"00a1xxxx";
	const uint8_t *big_ascii = (const uint8_t *)"9000";

	cr_assert_eq(tsw_iso_framer_init(&fr, &prof_default), 0);
	off = 0;
	cr_assert_eq(tsw_iso_framer_next(&fr, big, 2, &off, &f, &len), -TSW_E_FRAME_TOO_BIG);
	tsw_iso_framer_free(&fr);
	cr_assert_eq(tsw_iso_framer_init(&fr, &prof_default), 0);
	off = 0;
	cr_assert_eq(tsw_iso_framer_next(&fr, max, 2, &off, &f, &len), 0, "8192 is allowed");
	tsw_iso_framer_free(&fr);

	cr_assert_eq(tsw_iso_framer_init(&fr, &prof_ascii4), 0);
	off = 0;
	cr_assert_eq(tsw_iso_framer_next(&fr, bad_ascii, 8, &off, &f, &len), -TSW_E_BAD_HEADER);
	tsw_iso_framer_free(&fr);
	cr_assert_eq(tsw_iso_framer_init(&fr, &prof_ascii4), 0);
	off = 0;
	cr_assert_eq(tsw_iso_framer_next(&fr, big_ascii, 2, &off, &f, &len), 0);
	off = 0;
	cr_assert_eq(tsw_iso_framer_next(&fr, big_ascii + 2, 2, &off, &f, &len),
		     -TSW_E_FRAME_TOO_BIG, "split header is checked too");
	tsw_iso_framer_free(&fr);
}

Test(framer, unframed_profile_takes_the_whole_buffer, .init = load_profiles)
{
	struct tsw_iso_framer fr;
	const uint8_t *f;
	size_t off = 0, len;
	static uint8_t huge[TSW_ISO_MAX_FRAME_DEFAULT + 1];

	cr_assert_eq(tsw_iso_framer_init(&fr, &prof_hex), 0);
	cr_assert_eq(tsw_iso_framer_next(&fr, (const uint8_t *)"0800abc", 7, &off, &f, &len), 1);
	cr_assert_eq(len, 7);
	cr_assert_eq(off, 7);
	cr_assert_eq(tsw_iso_framer_next(&fr, (const uint8_t *)"0800abc", 7, &off, &f, &len), 0);
	off = 0;
	cr_assert_eq(tsw_iso_framer_next(&fr, huge, sizeof(huge), &off, &f, &len),
		     -TSW_E_FRAME_TOO_BIG);
	tsw_iso_framer_free(&fr);
}

Test(framer, header_write_refuses_oversized_bodies, .init = load_profiles)
{
	uint8_t h[4];

	cr_assert_eq(tsw_iso_header_write(&prof_default, 300, h), 0);
	cr_assert_eq(h[0], 1);
	cr_assert_eq(h[1], 44);
	cr_assert_eq(tsw_iso_header_write(&prof_ascii4, 250, h), 0);
	cr_assert_eq(memcmp(h, "0250", 4), 0);
	cr_assert_eq(tsw_iso_header_write(&prof_default, TSW_ISO_MAX_FRAME_DEFAULT + 1, h),
		     -TSW_E_FRAME_TOO_BIG);
	cr_assert_eq(tsw_iso_header_write(&prof_ascii4, TSW_ISO_MAX_FRAME_DEFAULT + 1, h),
		     -TSW_E_FRAME_TOO_BIG);
}

/* limits.max_frame once replaced a profile's cap: an ascii4 profile with
 * max_frame 12000 wrote "0001" for a body of 10001 bytes, and the peer
 * read 10000 of them as frames of their own */
Test(framer, header_write_refuses_a_body_its_header_cannot_say, .init = load_profiles)
{
	struct tsw_iso_profile big4 = prof_ascii4, big2 = prof_default;
	uint8_t h[4] = {'x', 'x', 'x', 'x'};

	cr_assert_eq(tsw_iso_header_max(&prof_ascii4), 9999);
	cr_assert_eq(tsw_iso_header_max(&prof_default), 65535);
	cr_assert_str_eq(tsw_iso_header_name(&prof_ascii4), "ascii4");
	cr_assert_str_eq(tsw_iso_header_name(&prof_default), "bin2");
	big4.max_frame = 12000;
	cr_assert_eq(tsw_iso_header_write(&big4, 10001, h), -TSW_E_FRAME_TOO_BIG);
	cr_assert_eq(tsw_iso_header_write(&big4, 10000, h), -TSW_E_FRAME_TOO_BIG);
	cr_assert_eq(memcmp(h, "xxxx", 4), 0, "nothing written");
	cr_assert_eq(tsw_iso_header_write(&big4, 9999, h), 0);
	cr_assert_eq(memcmp(h, "9999", 4), 0);
	big2.max_frame = 70000; /* not a profile file's value: the header's 16 bits */
	cr_assert_eq(tsw_iso_header_write(&big2, 65536, h), -TSW_E_FRAME_TOO_BIG);
	cr_assert_eq(tsw_iso_header_write(&big2, 65535, h), 0);
	cr_assert_eq(h[0], 0xff);
	cr_assert_eq(h[1], 0xff);
}

/* A frame assembled in the framer's buffer (split across reads) is the
 * issuer's answer with its PAN: wiped once the caller is done with it. */
Test(framer, assembled_frame_is_wiped_once_consumed, .init = load_profiles)
{
	static const char pan[] = "5413330089010012";
	uint8_t s[64];
	struct tsw_iso_framer fr;
	const uint8_t *f;
	size_t off, len, n;

	n = 2 + 4 + sizeof(pan) - 1;
	s[0] = 0;
	s[1] = (uint8_t)(n - 2);
	memcpy(s + 2, "0110", 4);
	memcpy(s + 6, pan, sizeof(pan) - 1);
	cr_assert_eq(tsw_iso_framer_init(&fr, &prof_default), 0);
	off = 0;
	cr_assert_eq(tsw_iso_framer_next(&fr, s, 9, &off, &f, &len), 0, "a part");
	off = 0;
	cr_assert_eq(tsw_iso_framer_next(&fr, s + 9, n - 9, &off, &f, &len), 1);
	cr_assert_eq(f, fr.acc, "assembled in the framer's buffer");
	cr_assert_eq(memcmp(f + 4, pan, sizeof(pan) - 1), 0);
	/* the caller is done with it: the next call (no more input) wipes it */
	cr_assert_eq(tsw_iso_framer_next(&fr, s + 9, n - 9, &off, &f, &len), 0);
	cr_assert_null(memmem(fr.acc, n - 2, pan + 6, 6), "PAN digits left in the framer");
	for (size_t i = 0; i < n - 2; i++) /* the body; acc's other bytes were never written */
		cr_assert_eq(fr.acc[i], 0, "byte %zu", i);
	tsw_iso_framer_free(&fr);
}

/* A partial frame when the connection goes (link down): reset wipes it. */
Test(framer, reset_wipes_a_partial_frame, .init = load_profiles)
{
	static const char pan[] = "5413330089010012";
	uint8_t s[64] = {0, 40};
	struct tsw_iso_framer fr;
	const uint8_t *f;
	size_t off = 0, len;

	memcpy(s + 2, "0110", 4);
	memcpy(s + 6, pan, sizeof(pan) - 1);
	cr_assert_eq(tsw_iso_framer_init(&fr, &prof_default), 0);
	cr_assert_eq(tsw_iso_framer_next(&fr, s, 2 + 4 + sizeof(pan) - 1, &off, &f, &len), 0);
	cr_assert_not_null(memmem(fr.acc, 4 + sizeof(pan) - 1, pan, sizeof(pan) - 1),
			   "held until the rest comes");
	tsw_iso_framer_reset(&fr);
	cr_assert_null(memmem(fr.acc, 4 + sizeof(pan) - 1, pan + 6, 6), "PAN digits left after reset");
	/* usable again */
	off = 0;
	s[1] = 4;
	cr_assert_eq(tsw_iso_framer_next(&fr, s, 6, &off, &f, &len), 1);
	cr_assert_eq(len, 4);
	tsw_iso_framer_free(&fr);
}

/* ---- DE48 subelements --------------------------------------------------- */

Test(de48, iterate_find_and_put)
{
	const uint8_t *d = (const uint8_t *)"1008DEVICE0111040A1B1200";
	struct tsw_de48_iter it = {.p = d, .len = strlen((const char *)d), .off = 0};
	const unsigned tags[] = {10, 11, 12};
	const size_t lens[] = {8, 4, 0};
	const uint8_t *v;
	size_t vlen;
	unsigned tag;
	uint8_t out[64];
	size_t off = 0;

	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(tsw_de48_next(&it, &tag, &v, &vlen), 1);
		cr_assert_eq(tag, tags[i]);
		cr_assert_eq(vlen, lens[i]);
	}
	cr_assert_eq(tsw_de48_next(&it, &tag, &v, &vlen), 0);
	cr_assert_eq(tsw_de48_find(d, it.len, 11, &v, &vlen), 1);
	cr_assert_eq(memcmp(v, "0A1B", 4), 0);
	cr_assert_eq(tsw_de48_find(d, it.len, 30, &v, &vlen), 0);

	cr_assert_eq(
	    tsw_de48_put(out, sizeof(out), &off, 30, (const uint8_t *)"4895370012345678", 16), 0);
	cr_assert_eq(tsw_de48_put(out, sizeof(out), &off, 5, (const uint8_t *)"", 0), 0);
	cr_assert_eq(off, 24);
	cr_assert_eq(memcmp(out,
			    "30164895370012345678"
			    "0500",
			    24),
		     0);
	cr_assert_eq(tsw_de48_put(out, sizeof(out), &off, 100, (const uint8_t *)"x", 1),
		     -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_de48_put(out, 300, &off, 1, out, 100), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_de48_put(out, 27, &off, 1, (const uint8_t *)"x", 0), -TSW_E_NO_SPACE);
	cr_assert_eq(off, 24, "off untouched on failure");
	cr_assert_eq(tsw_de48_put(out, 28, &off, 1, (const uint8_t *)"x", 0), 0);
}

struct de48_bad {
	const char *rule;
	const char *data;
};

static const struct de48_bad de48_bad_cases[] = {
    {"short header", "100"},
    {"non-digit tag", "1A02xx"},
    {"non-digit length", "10x2xx"},
    {"value past the end", "1005abcd"},
    {"second element broken", "1002ab11"},
};

Test(de48, malformed_subelements_are_refused)
{
	for (size_t i = 0; i < ARRAY_SIZE(de48_bad_cases); i++) {
		const char *d = de48_bad_cases[i].data;
		size_t n = strlen(d);
		uint8_t *heap = malloc(n);
		const uint8_t *v;
		size_t vlen;

		memcpy(heap, d, n);
		cr_assert_eq(tsw_de48_find(heap, n, 99, &v, &vlen), -TSW_E_BAD_TLV, "%s",
			     de48_bad_cases[i].rule);
		free(heap);
	}
}

Test(de48, copy_except_drops_token_tags)
{
	const char *in = "1004ABCD3016489537001234567811020F3102271200";
	uint8_t out[64];
	size_t off = 0;

	cr_assert_eq(
	    tsw_de48_copy_except((const uint8_t *)in, strlen(in), 30, 36, out, sizeof(out), &off),
	    0);
	cr_assert_eq(off, strlen("1004ABCD11020F1200"));
	cr_assert_eq(memcmp(out, "1004ABCD11020F1200", off), 0);
	off = 0;
	cr_assert_eq(tsw_de48_copy_except((const uint8_t *)in, strlen(in), 30, 36, out, 10, &off),
		     -TSW_E_NO_SPACE);
	cr_assert_eq(off, 0);
	cr_assert_eq(tsw_de48_copy_except((const uint8_t *)"10", 2, 30, 36, out, sizeof(out), &off),
		     -TSW_E_BAD_TLV);
}

/* ---- BER-TLV ------------------------------------------------------------ */

Test(tlv, iterate_and_find_emv_tags)
{
	const uint8_t d[] = {0x9f, 0x26, 0x08, 1,    2,	   3,	 4,    5,   6, 7, 8, /* ARQC */
			     0x00, 0x00,					     /* padding */
			     0x9f, 0x36, 0x02, 0x00, 0x2a,			     /* ATC */
			     0x82, 0x02, 0x19, 0x80,				     /* AIP */
			     0x5f, 0x34, 0x01, 0x01,				     /* PSN */
			     0x9f, 0x81, 0x01, 0x81, 0x01, 0xee, /* 3-byte tag, 0x81 length */
			     0xdf, 0x82, 0x83, 0x04, 0x82, 0x00, 0x01, 0x55}; /* 4-byte tag */
	const uint32_t tags[] = {0x9f26, 0x9f36, 0x82, 0x5f34, 0x9f8101, 0xdf828304};
	const size_t lens[] = {8, 2, 2, 1, 1, 1};
	struct tsw_tlv_iter it = {.p = d, .len = sizeof(d), .off = 0};
	const uint8_t *v;
	size_t vlen;
	uint32_t tag;

	for (size_t i = 0; i < ARRAY_SIZE(tags); i++) {
		cr_assert_eq(tsw_tlv_next(&it, &tag, &v, &vlen), 1, "object %zu", i);
		cr_assert_eq(tag, tags[i], "object %zu tag %x", i, tag);
		cr_assert_eq(vlen, lens[i]);
	}
	cr_assert_eq(tsw_tlv_next(&it, &tag, &v, &vlen), 0);
	cr_assert_eq(tsw_tlv_find(d, sizeof(d), 0x9f36, &v, &vlen), 1);
	cr_assert_eq(vlen, 2);
	cr_assert_eq(v[1], 0x2a);
	cr_assert_eq(tsw_tlv_find(d, sizeof(d), 0x9f27, &v, &vlen), 0);
}

struct tlv_bad {
	const char *rule;
	uint8_t d[8];
	size_t n;
};

static const struct tlv_bad tlv_bad_cases[] = {
    {"tag only", {0x9f}, 1},
    {"tag without length", {0x82}, 1},
    {"tag longer than 4 bytes", {0x9f, 0x81, 0x81, 0x81, 0x01, 0x00}, 6},
    {"value past the end", {0x82, 0x03, 0x01, 0x02}, 4},
    {"indefinite length", {0x82, 0x80, 0x00}, 3},
    {"length of 4 bytes", {0x82, 0x84, 0, 0, 0, 1, 0}, 7},
    {"long length cut", {0x82, 0x82, 0x00}, 3},
    {"long length past the end", {0x82, 0x81, 0x05, 0x01}, 4},
};

Test(tlv, malformed_data_is_refused)
{
	for (size_t i = 0; i < ARRAY_SIZE(tlv_bad_cases); i++) {
		const struct tlv_bad *c = &tlv_bad_cases[i];
		uint8_t *heap = malloc(c->n);
		const uint8_t *v;
		size_t vlen;

		memcpy(heap, c->d, c->n);
		cr_assert_eq(tsw_tlv_find(heap, c->n, 0x9999, &v, &vlen), -TSW_E_BAD_TLV, "%s",
			     c->rule);
		free(heap);
	}
}

static const uint32_t card_tags[] = {0x5a, 0x57, 0x5f24, 0x9f6b};

/* The tags that carry card data are left out at any depth, a template's
 * length is rewritten, the rest is copied as it was. */
Test(tlv, copy_except_drops_tags_at_any_depth)
{
	const uint8_t in[] = {
	    0x5a, 0x08, 0x54, 0x13, 0x33, 0x00, 0x89, 0x01, 0x00, 0x12, /* PAN */
	    0x9f, 0x26, 0x02, 0xaa, 0xbb,				/* ARQC */
	    0x00,							/* padding */
	    0x70, 0x81, 0x0d,						/* template, long length */
	    0x57, 0x03, 0x54, 0x13, 0xdf,				/* track 2 */
	    0x77, 0x06, 0x5f, 0x24, 0x03, 0x29, 0x12, 0x31,		/* expiry, nested */
	    0x82, 0x00,							/* empty AIP */
	    0x91, 0x02, 0x01, 0x02,					/* issuer auth data */
	};
	const uint8_t want[] = {0x9f, 0x26, 0x02, 0xaa, 0xbb, 0x70, 0x02, 0x77, 0x00,
				0x82, 0x00, 0x91, 0x02, 0x01, 0x02};
	uint8_t out[64];
	unsigned dropped = 99;
	int n;

	n = tsw_tlv_copy_except(in, sizeof(in), card_tags, ARRAY_SIZE(card_tags), out, sizeof(out),
				&dropped);
	cr_assert_eq(n, (int)sizeof(want), "%d", n);
	cr_assert_eq(memcmp(out, want, sizeof(want)), 0);
	cr_assert_eq(dropped, 3);
	/* nothing listed: every object, nothing dropped */
	n = tsw_tlv_copy_except(want, sizeof(want), card_tags, ARRAY_SIZE(card_tags), out,
				sizeof(out), &dropped);
	cr_assert_eq(n, (int)sizeof(want));
	cr_assert_eq(memcmp(out, want, sizeof(want)), 0);
	cr_assert_eq(dropped, 0);
	/* no room */
	cr_assert_eq(tsw_tlv_copy_except(in, sizeof(in), card_tags, ARRAY_SIZE(card_tags), out, 6,
					 &dropped),
		     -TSW_E_NO_SPACE);
}

Test(tlv, copy_except_refuses_malformed_data_at_any_depth)
{
	const uint8_t bad_inner[] = {0x70, 0x04, 0x57, 0x05, 0x01, 0x02}; /* inner past its end */
	uint8_t deep[2 * (TSW_TLV_DEPTH_MAX + 2)], out[64];
	unsigned dropped = 7;

	for (size_t i = 0; i < ARRAY_SIZE(tlv_bad_cases); i++)
		cr_assert_eq(tsw_tlv_copy_except(tlv_bad_cases[i].d, tlv_bad_cases[i].n, card_tags,
						 ARRAY_SIZE(card_tags), out, sizeof(out), &dropped),
			     -TSW_E_BAD_TLV, "%s", tlv_bad_cases[i].rule);
	cr_assert_eq(tsw_tlv_copy_except(bad_inner, sizeof(bad_inner), card_tags,
					 ARRAY_SIZE(card_tags), out, sizeof(out), &dropped),
		     -TSW_E_BAD_TLV);
	/* templates nested past the bound */
	for (size_t i = 0; i < TSW_TLV_DEPTH_MAX + 2; i++) {
		deep[2 * i] = 0x70;
		deep[2 * i + 1] = (uint8_t)(2 * (TSW_TLV_DEPTH_MAX + 1 - i));
	}
	cr_assert_eq(tsw_tlv_copy_except(deep, sizeof(deep), card_tags, ARRAY_SIZE(card_tags), out,
					 sizeof(out), &dropped),
		     -TSW_E_BAD_TLV);
	cr_assert_eq(dropped, 7, "untouched on failure");
}

/* ---- masking ------------------------------------------------------------ */

static void assert_no_digit_run(const char *s, const char *digits, const char *ctx)
{
	/* no 7 consecutive digits of the secret appear: first 6 + last 4 is
	 * the most a log line may show */
	size_t n = strlen(digits);

	cr_assert_null(strstr(s, digits), "%s: full value in '%s'", ctx, s);
	for (size_t i = 0; i + 7 <= n; i++) {
		char run[8];

		memcpy(run, digits + i, 7);
		run[7] = '\0';
		cr_assert_null(strstr(s, run), "%s: digits %zu.. of the secret in the output", ctx,
			       i);
	}
}

Test(mask, pan_token_track2_and_de48_token_are_masked, .init = load_profiles)
{
	const char *token = "4895370012345678";
	const char *pan = "5412345678901234";
	struct fv fields[] = {
	    {2, token, 0},
	    {4, "000000012500", 0},
	    {14, "2712", 0},
	    {35, "5412345678901234=27121011234500000", 0},
	    {48,
	     "1008DEVICE013016"
	     "4895370012345678"
	     "3104271211040F0F",
	     0},
	    {52, "\x01\x02\x03\x04\x05\x06\x07\x08", 8},
	    {55, "\x9f\x26\x02\x01\x02", 5},
	};
	uint8_t buf[512];
	struct tsw_iso_msg m;
	char out[1024];
	size_t n = raw_msg(&prof_default, "0100", fields, ARRAY_SIZE(fields), buf);
	size_t w;

	cr_assert_eq(tsw_iso_decode(&prof_default, buf, n, &m), 0);
	w = tsw_iso_format_masked(&prof_default, &m, out, sizeof(out));
	cr_assert_eq(w, strlen(out));
	cr_assert_str_eq(out, "mti=0100 f2=489537******5678 f4=000000012500 f14=**** "
			      "f35=541234******1234=***************** "
			      "f48=10=DEVICE01;30=489537******5678;31=****;11=**** "
			      "f52=[8] f55=[5]");
	assert_no_digit_run(out, token, "token");
	assert_no_digit_run(out, pan, "pan");
	cr_assert_null(strstr(out, "2712"), "expiry shown");
}

Test(mask, truncated_output_ends_in_dots_and_stays_masked, .init = load_profiles)
{
	uint8_t buf[1024];
	struct tsw_iso_msg m;
	char out[64];
	size_t n = raw_msg(&prof_default, "0100", auth_0100, ARRAY_SIZE(auth_0100), buf);

	cr_assert_eq(tsw_iso_decode(&prof_default, buf, n, &m), 0);
	for (size_t cap = 1; cap <= sizeof(out); cap++) {
		size_t w = tsw_iso_format_masked(&prof_default, &m, out, cap);

		cr_assert_lt(w, cap);
		cr_assert_eq(strlen(out), w);
		if (cap > 4)
			cr_assert_eq(strcmp(out + w - 3, "..."), 0, "cap %zu: %s", cap, out);
		assert_no_digit_run(out, "4895370012345678", "truncated");
	}
	cr_assert_eq(tsw_iso_format_masked(&prof_default, &m, out, 0), 0);
}

Test(mask, malformed_de48_shows_length_only, .init = load_profiles)
{
	const struct fv fields[] = {{48, "30164895370012345678XX", 0}}; /* valid */
	const struct fv broken[] = {{48, "3099489537001234567812", 0}};
	uint8_t buf[256];
	struct tsw_iso_msg m;
	char out[256];
	size_t n;

	n = raw_msg(&prof_default, "0100", fields, 1, buf);
	cr_assert_eq(tsw_iso_decode(&prof_default, buf, n, &m), 0);
	tsw_iso_format_masked(&prof_default, &m, out, sizeof(out));
	cr_assert_str_eq(out, "mti=0100 f48=30=489537******5678;malformed[22]");
	n = raw_msg(&prof_default, "0100", broken, 1, buf);
	cr_assert_eq(tsw_iso_decode(&prof_default, buf, n, &m), 0);
	tsw_iso_format_masked(&prof_default, &m, out, sizeof(out));
	cr_assert_str_eq(out, "mti=0100 f48=malformed[22]");
}

/* ---- character classes --------------------------------------------------- */

#include "../../../src/iso8583/charclass.h"

Test(charclass, word_checks_agree_with_the_table_for_every_byte_and_position)
{
	uint8_t buf[24];

	for (size_t n = 0; n <= sizeof(buf); n++) {
		for (size_t pos = 0; pos < (n ? n : 1); pos++) {
			for (unsigned b = 0; b < 256; b++) {
				memset(buf, '5', sizeof(buf));
				if (n)
					buf[pos] = (uint8_t)b;
				cr_assert_eq(cc_digits(buf, n), cc_all(buf, n, CC_DIGIT),
					     "digits n %zu pos %zu byte %02x", n, pos, b);
				memset(buf, '~', sizeof(buf));
				if (n)
					buf[pos] = (uint8_t)b;
				cr_assert_eq(cc_printable(buf, n), cc_all(buf, n, CC_ANS),
					     "printable n %zu pos %zu byte %02x", n, pos, b);
				memset(buf, ' ', sizeof(buf));
				if (n)
					buf[pos] = (uint8_t)b;
				cr_assert_eq(cc_printable(buf, n), cc_all(buf, n, CC_ANS),
					     "printable n %zu pos %zu byte %02x", n, pos, b);
			}
		}
	}
}

Test(encode, more_failure_paths, .init = load_profiles)
{
	uint8_t out[256];
	struct tsw_iso_profile small = prof_default;
	const struct tsw_iso_edit odd_hex[] = {
	    {0, 4, (const uint8_t *)"0100"},
	    {55, 3, (const uint8_t *)"9F2"},
	};
	const struct tsw_iso_edit null_mti[] = {{0, 4, NULL}};
	const struct tsw_iso_edit big[] = {
	    {0, 4, (const uint8_t *)"0100"},
	    {43, 40, (const uint8_t *)"0123456789012345678901234567890123456789"},
	};
	struct tsw_iso_profile hex55 = prof_hex;

	/* a hex-text b field must have an even length */
	hex55.fields[55].type = TSW_ISO_B;
	hex55.fields[55].hex = 1;
	hex55.fields[55].wire_max = 2 * hex55.fields[55].max_len;
	cr_assert_eq(tsw_iso_encode(&hex55, NULL, odd_hex, 2, out, sizeof(out)), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_iso_encode(&prof_default, NULL, null_mti, 1, out, sizeof(out)),
		     -TSW_E_NO_MTI);
	small.max_frame = 40;
	cr_assert_eq(tsw_iso_encode(&small, NULL, big, 2, out, sizeof(out)), -TSW_E_FRAME_TOO_BIG);
	small.max_frame = 52;
	cr_assert_eq(tsw_iso_encode(&small, NULL, big, 2, out, sizeof(out)), 52);
}

Test(profile, overlong_line_is_refused)
{
	char text[600];
	struct tsw_iso_profile p;
	unsigned line = 0;
	char dir[64];
	char *path;

	snprintf(text, sizeof(text), "header bin2\nbitmap binary\n2 n LL 19 %0400d\n", 0);
	path = write_temp(text, dir);
	cr_assert_eq(tsw_iso_profile_load(path, &p, &line), -TSW_E_BAD_PROFILE);
	cr_assert_eq(line, 3);
	remove_temp(dir, path);
}

/* A configured profile is a shipped name or, with a '/', a .spec path:
 * the same profile either way. */
Test(profile, a_name_or_a_path_loads_the_same_profile)
{
	struct tsw_iso_profile by_name, by_path;
	char path[4096];

	snprintf(path, sizeof(path), "%s/ascii4.spec", TSW_CONFIG_DIR);
	cr_assert_eq(tsw_iso_profile_load_spec("ascii4", &by_name), 0);
	cr_assert_eq(tsw_iso_profile_load_spec(path, &by_path), 0);
	cr_assert_eq(memcmp(&by_name, &by_path, sizeof(by_name)), 0);
	cr_assert_eq(tsw_iso_profile_load_spec("./no-such.spec", &by_path), -ENOENT);
	cr_assert_eq(tsw_iso_profile_load_spec("", &by_path), -TSW_E_BAD_INPUT);
}
