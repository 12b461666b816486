#include "answer.h"

#include <stdbool.h>
#include <string.h>

#include "tsw/error.h"

/* Fields an issuer echoes, ascending. */
static const uint16_t echo_fields[] = {2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49};

void sim_rules_init(struct sim_rules *rules)
{
	memset(rules, 0, sizeof(*rules));
	sim_rules_add(rules, "51=51");
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_alnum(char c)
{
	return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

int sim_rules_add(struct sim_rules *rules, const char *spec)
{
	const char *eq = strchr(spec, '=');
	struct sim_rule r;
	size_t n;

	if (!eq)
		return -TSW_E_BAD_INPUT;
	n = (size_t)(eq - spec);
	if (n == 0 || n > SIM_RULE_SUFFIX_MAX)
		return -TSW_E_BAD_INPUT;
	for (size_t i = 0; i < n; i++)
		if (!is_digit(spec[i]))
			return -TSW_E_BAD_INPUT;
	if (strlen(eq + 1) != 2 || !is_alnum(eq[1]) || !is_alnum(eq[2]))
		return -TSW_E_BAD_INPUT;
	if (rules->n >= SIM_RULES_MAX)
		return -TSW_E_FULL;
	memset(&r, 0, sizeof(r));
	memcpy(r.suffix, spec, n);
	r.suffix_len = (uint8_t)n;
	r.rc[0] = eq[1];
	r.rc[1] = eq[2];
	rules->r[rules->n++] = r;
	return 0;
}

void sim_rules_apply(const struct sim_rules *rules, const uint8_t *de4, size_t len, char ret_rc[2])
{
	const struct sim_rule *best = NULL;

	for (unsigned i = 0; i < rules->n; i++) {
		const struct sim_rule *r = &rules->r[i];

		if (r->suffix_len > len)
			continue;
		if (memcmp(de4 + len - r->suffix_len, r->suffix, r->suffix_len) != 0)
			continue;
		if (!best || r->suffix_len >= best->suffix_len)
			best = r;
	}
	if (best) {
		ret_rc[0] = best->rc[0];
		ret_rc[1] = best->rc[1];
	} else {
		ret_rc[0] = '0';
		ret_rc[1] = '0';
	}
}

/* Answer MTI: the function digit goes from request (0, 2) to response
 * (1, 3). Only the classes an issuer host answers. */
static int answer_mti(const char mti[4], char ret_mti[4], int *ret_authorizes)
{
	static const char *const answered[] = {"0100", "0200", "0120", "0400", "0420", "0800"};

	for (size_t i = 0; i < sizeof(answered) / sizeof(answered[0]); i++) {
		if (memcmp(mti, answered[i], 4) != 0)
			continue;
		memcpy(ret_mti, mti, 4);
		ret_mti[2] = (char)(mti[2] + 1);
		*ret_authorizes = (i < 2);
		return 1;
	}
	return 0;
}

static void approval_code(uint32_t seq, char out[6])
{
	uint32_t s = seq % 1000000u;

	for (int d = 5; d >= 0; d--) {
		out[d] = (char)('0' + s % 10);
		s /= 10;
	}
}

/* True when m's DE52 holds pin's PIN for DE2 (counted in pin). */
static bool pin_ok(struct sim_pin *pin, const struct tsw_iso_msg *m)
{
	bool ok;

	pin->checked++;
	ok = tsw_iso_has(m, 2) && m->f[52].len == tsw_hsm_pin_block_len(pin->zpk) &&
	     tsw_hsm_pin_verify(pin->s, pin->zpk, (const char *)tsw_iso_ptr(m, 2), m->f[2].len,
				tsw_iso_ptr(m, 52), pin->pin, pin->pin_len) == 0;
	if (!ok)
		pin->wrong++;
	return ok;
}

int sim_answer_build(const struct tsw_iso_profile *p, const struct sim_rules *rules,
		     struct sim_pin *pin, uint32_t auth_seq, const uint8_t *req, size_t len,
		     uint8_t *out, size_t cap, enum sim_verdict *ret_verdict, char ret_rc[2])
{
	struct tsw_iso_edit edits[1 + sizeof(echo_fields) / sizeof(echo_fields[0]) + 3];
	struct tsw_iso_msg m;
	char mti[4], rc[2] = {'0', '0'}, approval[6];
	size_t n = 0;
	int authorizes = 0, approved, added_rc = 0, r;

	r = tsw_iso_decode(p, req, len, &m);
	if (r < 0)
		return r;
	if (!answer_mti(m.mti, mti, &authorizes)) {
		*ret_verdict = SIM_NO_ANSWER;
		return 0;
	}
	if (authorizes && pin && tsw_iso_has(&m, 52) && !pin_ok(pin, &m))
		memcpy(rc, "55", 2);
	else if (authorizes && tsw_iso_has(&m, 4))
		sim_rules_apply(rules, tsw_iso_ptr(&m, 4), m.f[4].len, rc);

	approved = authorizes && rc[0] == '0' && rc[1] == '0';
	if (approved)
		approval_code(auth_seq, approval);
	edits[n++] = (struct tsw_iso_edit){.field = 0, .len = 4, .data = (const uint8_t *)mti};
	for (size_t i = 0; i < sizeof(echo_fields) / sizeof(echo_fields[0]); i++) {
		unsigned f = echo_fields[i];

		if (f > 39 && !added_rc) {
			if (approved)
				edits[n++] = (struct tsw_iso_edit){
				    .field = 38, .len = 6, .data = (const uint8_t *)approval};
			edits[n++] = (struct tsw_iso_edit){
			    .field = 39, .len = 2, .data = (const uint8_t *)rc};
			added_rc = 1;
		}
		if (!tsw_iso_has(&m, f))
			continue;
		edits[n++] = (struct tsw_iso_edit){
		    .field = (uint16_t)f, .len = m.f[f].len, .data = tsw_iso_ptr(&m, f)};
	}
	if (tsw_iso_has(&m, 70))
		edits[n++] = (struct tsw_iso_edit){
		    .field = 70, .len = m.f[70].len, .data = tsw_iso_ptr(&m, 70)};

	r = tsw_iso_encode(p, NULL, edits, n, out, cap);
	if (r < 0)
		return r;
	*ret_verdict = SIM_ANSWER;
	ret_rc[0] = rc[0];
	ret_rc[1] = rc[1];
	return r;
}
