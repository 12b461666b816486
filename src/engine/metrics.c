/* Metric helpers: response-code indexes, the MTI class a request counts
 * under, the count of an answer by class and code, and
 * of what became of a stand-in candidate.
 */
#include <string.h>

#include "engine_int.h"
#include "tsw/metrics.h"

static const char rc_names[TSW_METRICS_RC_MAX][3] = {
    "00", "14", "30", "51", "54", "55", "57", "61", "62", "63", "65", "91", "96", "05", "12",
    "94", "10", "08", "11", "16", "43", "",
};

unsigned tsw_metrics_rc_index(const char *rc)
{
	unsigned i;

	if (!rc || !rc[0] || !rc[1])
		return TSW_METRICS_RC_MAX - 1;
	for (i = 0; i < TSW_METRICS_RC_MAX - 1; i++)
		if (rc_names[i][0] == rc[0] && rc_names[i][1] == rc[1])
			return i;
	return TSW_METRICS_RC_MAX - 1;
}

const char *tsw_metrics_rc_name(unsigned i)
{
	if (i >= TSW_METRICS_RC_MAX)
		return NULL;
	return i == TSW_METRICS_RC_MAX - 1 ? "other" : rc_names[i];
}

const char *tsw_metrics_mti_name(unsigned cls)
{
	static const char *const names[TSW_MTI_CLASS_MAX] = {
	    "0100", "0200", "0120", "0400", "0420", "0800", "other",
	};

	return cls < TSW_MTI_CLASS_MAX ? names[cls] : NULL;
}

const char *tsw_metrics_standin_name(unsigned result)
{
	static const char *const names[TSW_STANDIN_RESULT_MAX] = {
	    [TSW_STANDIN_APPROVED] = "approved",
	    [TSW_STANDIN_DECLINED_AMOUNT] = "declined_amount",
	    [TSW_STANDIN_DECLINED_MODE] = "declined_mode",
	    [TSW_STANDIN_DECLINED_ASSURANCE] = "declined_assurance",
	    [TSW_STANDIN_DECLINED_EXPOSURE] = "declined_exposure",
	    [TSW_STANDIN_DECLINED_UNQUEUED] = "declined_unqueued",
	    [TSW_STANDIN_DECLINED_PIN] = "declined_pin",
	};

	return result < TSW_STANDIN_RESULT_MAX ? names[result] : NULL;
}

unsigned engine__mti_class(const char mti[4])
{
	if (mti[0] != '0')
		return TSW_MTI_OTHER;
	if (mti[1] == '1' && mti[2] == '0')
		return TSW_MTI_0100;
	if (mti[1] == '2' && mti[2] == '0')
		return TSW_MTI_0200;
	if ((mti[1] == '1' || mti[1] == '2') && mti[2] == '2')
		return TSW_MTI_0120;
	if (mti[1] == '4' && mti[2] == '0')
		return TSW_MTI_0400;
	if (mti[1] == '4' && mti[2] == '2')
		return TSW_MTI_0420;
	if (mti[1] == '8' && mti[2] == '0')
		return TSW_MTI_0800;
	return TSW_MTI_OTHER;
}

void engine__count_answer(struct tsw_engine *e, unsigned cls, const char *rc)
{
	TSW_COUNT(e->m->requests[cls][tsw_metrics_rc_index(rc)]);
}

/* Counts what became of stand-in candidate r and tells the operator
 * (rate-limited with every event). */
void engine__standin_decided(struct tsw_engine *e, const struct req *r, enum tsw_standin_result res)
{
	TSW_COUNT(e->m->standin[res]);
	engine_event_req(e, TSW_EV_STANDIN, r, .why = tsw_metrics_standin_name(res));
}

const char *tsw_metrics_card_check_name(unsigned result)
{
	static const char *const names[TSW_CARD_CHECK_RESULT_MAX] = {
	    [TSW_CARD_CHECK_OK] = "ok",
	    [TSW_CARD_CHECK_MISSING] = "missing",
	    [TSW_CARD_CHECK_MALFORMED] = "malformed",
	    [TSW_CARD_CHECK_MISMATCH] = "mismatch",
	    [TSW_CARD_CHECK_NO_KEY] = "no_key",
	    [TSW_CARD_CHECK_WRONG] = "wrong",
	    [TSW_CARD_CHECK_ATC_REPLAY] = "atc_replay",
	    [TSW_CARD_CHECK_ATC_WINDOW] = "atc_window",
	    [TSW_CARD_CHECK_STATE] = "state_unavailable",
	};

	return result < TSW_CARD_CHECK_RESULT_MAX ? names[result] : NULL;
}

const char *tsw_metrics_pin_name(unsigned result)
{
	static const char *const names[TSW_PIN_RESULT_MAX] = {
	    [TSW_PIN_OK] = "ok",
	    [TSW_PIN_NO_ACQUIRER_KEY] = "no_acquirer_key",
	    [TSW_PIN_NO_ISSUER_KEY] = "no_issuer_key",
	    [TSW_PIN_FORMAT] = "format",
	    [TSW_PIN_PAN] = "pan",
	};

	return result < TSW_PIN_RESULT_MAX ? names[result] : NULL;
}
