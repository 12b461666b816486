/* Fuzz target: the decode of a stored SAF item as the state env reads it
 * back at open (state__saf_record_decode, src/state/saf.c), format 1 (8-byte
 * header), format 2 (32 bytes) and format 3 (40 bytes).
 *
 * Input: the stored value. Checked invariants, each a trap:
 * - a decoded item's message lies inside the value, right after its
 *   header, and fills the rest of it; len is 1..TSW_STATE_SAF_MSG_MAX and
 *   use_token_len at most TSW_TOKEN_MAX_DIGITS;
 * - format 1 leaves the later fields zero, format 2 the put time;
 * - the item re-encodes (state__saf_record_encode, what the writer stores) to a
 *   value that decodes to the same item, byte for byte the input when it
 *   was format 3;
 * - a value that fails leaves the outputs untouched.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "state_int.h"
#include "tsw/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct saf_record rec, again, poison;
	const uint8_t *msg = NULL, *msg2 = NULL;
	uint8_t *enc;
	size_t hdr;
	int r;

	memset(&poison, 0xa5, sizeof(poison));
	rec = poison;
	r = state__saf_record_decode(data, size, &rec, &msg);
	if (r < 0) {
		fuzz_check(r == -TSW_E_CORRUPT);
		fuzz_check(memcmp(&rec, &poison, sizeof(rec)) == 0 && msg == NULL);
		return 0;
	}
	fuzz_check(r == 0);
	fuzz_check(rec.len >= 1 && rec.len <= TSW_STATE_SAF_MSG_MAX);
	fuzz_check(rec.use_token_len <= TSW_TOKEN_MAX_DIGITS);
	hdr = (size_t)(msg - data);
	fuzz_check(hdr == sizeof(struct saf_record_v1) || hdr == SAF_RECORD_V2_SIZE ||
		   hdr == sizeof(struct saf_record));
	if (hdr == SAF_RECORD_V2_SIZE)
		fuzz_check(rec.put_ms == 0);
	fuzz_check(hdr + rec.len == size);
	if (hdr == sizeof(struct saf_record_v1)) {
		static const char zero[TSW_TOKEN_MAX_DIGITS];

		fuzz_check(rec.flags == 0 && rec.use_token_len == 0 && rec.put_ms == 0 &&
			   memcmp(rec.use_token, zero, sizeof(zero)) == 0);
	}

	enc = malloc(sizeof(rec) + rec.len);
	fuzz_check(enc != NULL);
	state__saf_record_encode(&rec, msg, enc);
	fuzz_check(state__saf_record_decode(enc, sizeof(rec) + rec.len, &again, &msg2) == 0);
	fuzz_check(memcmp(&rec, &again, sizeof(rec)) == 0);
	fuzz_check(msg2 == enc + sizeof(rec) && memcmp(msg, msg2, rec.len) == 0);
	if (hdr == sizeof(struct saf_record))
		fuzz_check(memcmp(enc, data, size) == 0);
	free(enc);
	return 0;
}
