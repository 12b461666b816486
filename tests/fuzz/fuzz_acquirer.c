/* Fuzz target: the engine's acquirer input (tsw_engine_acq_input): byte
 * streams of several frames, split anywhere, through every profile (bin2
 * and ascii4 headers, default and non-default max_frame), with an issuer
 * that answers 00 to whatever reaches it.
 *
 * Input: byte 0 picks the acquirer profile (bits 0-1) and the issuer's
 * (bits 2-3) from enum fe_profile, bit 4 leaves the issuer silent (the
 * requests time out), bit 5 turns stand-in on; byte 1 + 1 is the chunk
 * size the stream is fed in; the rest is the stream. Checked invariants
 * (fuzz_engine.c), each a trap:
 * - the acquirer gets whole frames that decode, answers only, never more than the frames it sent,
 * never a PAN of the vault it did not send itself in a field;
 * - the issuer gets whole frames that decode with its profile, within
 *   its max_frame: nothing a length header cannot express goes out;
 * - no event carries a PAN or an unmasked token;
 * - acq_input returns 0 or one of its documented errors.
 */
#include "fuzz_engine.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fe f;
	bool silent;

	if (size < 2)
		return 0;
	fe_start(&f, (enum fe_profile)(data[0] & 3), (enum fe_profile)(data[0] >> 2 & 3));
	silent = data[0] & 0x10;
	if (data[0] & 0x20) {
		f.cfg.settings.standin_enabled = true;
		f.cfg.settings.standin_on_timeout = true;
		f.cfg.settings.standin_max_amount = 100000;
		fuzz_check(tsw_engine_reconfigure(f.e, &f.cfg) == 0);
	}
	fe_acq_feed(&f, data + 2, size - 2, (size_t)data[1] + 1, !silent);
	/* past the issuer timeout: every request still pending is answered */
	fe_advance(&f, f.cfg.settings.issuer_timeout_ms + 1, !silent);
	fe_advance(&f, f.cfg.settings.issuer_timeout_ms + 1, !silent);
	fe_stop(&f);
	return 0;
}
