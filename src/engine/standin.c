/* Stand-in processing. When the issuer of a 0100/0200 has no signed-on
 * link (or, with standin_on_timeout, the request timed out), and the
 * operator enabled stand-in, the switch approves on the issuer's behalf
 * after every domain control (tsw_authz_decide, the limited-use
 * reservation), when the amount, the presentment mode and the token's
 * assurance level are within the rules and the token's stand-in exposure
 * over the window leaves room. Each approval is reported to the issuer by
 * an advice (0120 for a 0100, 0220 for a 0200) in the state's SAF queue,
 * delivered like a reversal when the issuer is back, and the approval
 * goes to the acquirer only once that advice is on disk: the held-answer
 * FIFO of delivery.c holds it, as it holds a 91 for its reversal.
 *
 * Exposure. A token's requests spread over every worker, so the amounts
 * approved by stand-in are summed in one table for the process (struct
 * tsw_standin_exposure, made by the server and named in every engine's
 * config): open addressing (linear probing, backward-shift deletion) of
 * the token digits -> (window start, amount), under one mutex. Stand-in
 * runs only while an issuer is unavailable, so the lock is not on the
 * normal path. The window is fixed: it starts at a token's first
 * stand-in and runs standin_window_s; after it the token starts again
 * at 0. A full table refuses the stand-in (91, counted) rather than
 * forget a token's exposure; expired entries are purged when it is full,
 * at most once a second. Memory only: a restart forgets every exposure.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "acq_reversal.h"
#include "delivery.h"
#include "engine_int.h"
#include "standin.h"
#include "use.h"
#include "tsw/authz.h"
#include "tsw/error.h"
#include "tsw/token.h"

/* A full table is purged of expired windows at most this often. */
#define PURGE_INTERVAL_NS NS_PER_S
/* Approval codes: 'S' and five digits, split evenly between the workers
 * (like the switch STANs), so two workers never hand out the same one. */
#define CODE_SPACE 100000u
#define ECHO_IDX_DE4 2

_Static_assert(TSW_POS_MODE_MAX <= 32, "standin_modes holds a bit per mode");

struct exp_ent {
	uint64_t start_ns; /* the window began here (the engines' monotonic clock) */
	uint64_t amount;   /* approved by stand-in in this window, minor units */
	uint8_t len;	   /* token digits; 0: empty */
	char token[TSW_TOKEN_MAX_DIGITS];
};

struct tsw_standin_exposure {
	pthread_mutex_t lock;
	struct exp_ent *ent;
	uint32_t mask; /* slots - 1: twice max_tokens, rounded up to a power of two */
	uint32_t used; /* entries held, expired ones included until purged */
	uint32_t max_tokens;
	uint64_t next_purge_ns;
};

int tsw_standin_exposure_new(uint32_t max_tokens, struct tsw_standin_exposure **ret_table)
{
	struct tsw_standin_exposure *t;
	uint64_t slots = 1;

	if (max_tokens == 0 || max_tokens > TSW_CONFIG_STANDIN_MAX_TOKENS_MAX)
		return -EINVAL;
	while (slots < 2ull * max_tokens)
		slots <<= 1;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ent = calloc(slots, sizeof(*t->ent));
	if (!t->ent) {
		free(t);
		return -ENOMEM;
	}
	if (pthread_mutex_init(&t->lock, NULL) != 0) {
		free(t->ent);
		free(t);
		return -ENOMEM;
	}
	t->mask = (uint32_t)(slots - 1);
	t->max_tokens = max_tokens;
	*ret_table = t;
	return 0;
}

void tsw_standin_exposure_free(struct tsw_standin_exposure *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t->ent);
	free(t);
}

static uint32_t home_of(const struct tsw_standin_exposure *t, const char *token, size_t len)
{
	return (uint32_t)XXH3_64bits(token, len) & t->mask;
}

static bool ent_is(const struct exp_ent *s, const char *token, size_t len)
{
	return s->len == len && memcmp(s->token, token, len) == 0;
}

/* Workers read the clock at their own loop iterations: one may be a
 * little behind the one that opened the window, which must not look
 * like a window long past. */
static bool expired(const struct exp_ent *s, uint64_t now_ns, uint64_t window_ns)
{
	return now_ns > s->start_ns && now_ns - s->start_ns >= window_ns;
}

/* Empties slot i and moves the entries behind it that may move up, so
 * that every lookup still finds its entry (linear probing). */
static void remove_at(struct tsw_standin_exposure *t, uint32_t i)
{
	uint32_t j = i;

	for (;;) {
		uint32_t k;

		j = (j + 1) & t->mask;
		if (!t->ent[j].len)
			break;
		k = home_of(t, t->ent[j].token, t->ent[j].len);
		/* the entry at j stays when its home lies cyclically in (i, j] */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		t->ent[i] = t->ent[j];
		i = j;
	}
	t->ent[i].len = 0;
	t->used--;
}

static void purge(struct tsw_standin_exposure *t, uint64_t now_ns, uint64_t window_ns)
{
	uint32_t i = 0;

	/* a removal pulls a later entry into i: look at i again */
	while (i <= t->mask) {
		if (t->ent[i].len && expired(&t->ent[i], now_ns, window_ns))
			remove_at(t, i);
		else
			i++;
	}
}

/* Adds amount to token's exposure when the sum stays within cap.
 * Returns 0 and the window's start (for a refund), -TSW_E_FULL (over
 * cap) or -ENOSPC (a new token and no room). */
static int exposure_charge(struct tsw_standin_exposure *t, const char *token, size_t len,
			   uint64_t amount, uint64_t cap, uint64_t now_ns, uint64_t window_ns,
			   uint64_t *ret_start)
{
	struct exp_ent *s;
	uint32_t i;
	int ret = 0;

	pthread_mutex_lock(&t->lock);
	for (i = home_of(t, token, len); t->ent[i].len; i = (i + 1) & t->mask)
		if (ent_is(&t->ent[i], token, len))
			break;
	s = &t->ent[i];
	if (!s->len) {
		if (t->used >= t->max_tokens && now_ns >= t->next_purge_ns) {
			t->next_purge_ns = now_ns + PURGE_INTERVAL_NS;
			purge(t, now_ns, window_ns);
			/* the probe's end may have moved */
			for (i = home_of(t, token, len); t->ent[i].len; i = (i + 1) & t->mask)
				;
			s = &t->ent[i];
		}
		if (t->used >= t->max_tokens) {
			ret = -ENOSPC;
			goto out;
		}
		if (amount > cap) {
			ret = -TSW_E_FULL;
			goto out;
		}
		memcpy(s->token, token, len);
		s->len = (uint8_t)len;
		s->start_ns = now_ns;
		s->amount = 0;
		t->used++;
	} else if (expired(s, now_ns, window_ns)) {
		s->start_ns = now_ns;
		s->amount = 0;
	}
	if (amount > cap || s->amount > cap - amount) {
		ret = -TSW_E_FULL;
		goto out;
	}
	s->amount += amount;
	*ret_start = s->start_ns;
out:
	pthread_mutex_unlock(&t->lock);
	return ret;
}

/* Takes back a charge whose stand-in did not happen (its window only). */
static void exposure_refund(struct tsw_standin_exposure *t, const char *token, size_t len,
			    uint64_t amount, uint64_t start_ns)
{
	uint32_t i;

	pthread_mutex_lock(&t->lock);
	for (i = home_of(t, token, len); t->ent[i].len; i = (i + 1) & t->mask) {
		struct exp_ent *s = &t->ent[i];

		if (!ent_is(s, token, len))
			continue;
		if (s->start_ns == start_ns)
			s->amount -= amount < s->amount ? amount : s->amount;
		break;
	}
	pthread_mutex_unlock(&t->lock);
}

int engine__standin_init(struct tsw_engine *e)
{
	int r;

	/* codes go on from a random point: a restart does not hand out the
	 * ones of the last run again at once */
	e->standin_seq = (uint32_t)(e->rng >> 16);
	if (e->standin_exp)
		return 0;
	r = tsw_standin_exposure_new(e->cfg.standin_max_tokens, &e->standin_exp_own);
	if (r < 0)
		return r;
	e->standin_exp = e->standin_exp_own;
	return 0;
}

void engine__standin_free(struct tsw_engine *e)
{
	tsw_standin_exposure_free(e->standin_exp_own);
	e->standin_exp_own = NULL;
	e->standin_exp = NULL;
}

bool engine__standin_wanted(const struct tsw_engine *e, unsigned cls, bool timed_out)
{
	if (!e->cfg.standin_enabled || (timed_out && !e->cfg.standin_on_timeout))
		return false;
	return cls == TSW_MTI_0100 || cls == TSW_MTI_0200;
}

/* DE4 as echoed (the acquirer's: 12 digits in the default profile). */
static bool echo_amount(const struct echo *ec, uint64_t *ret)
{
	const uint8_t *p = ec->data + ec->off[ECHO_IDX_DE4];
	uint64_t v = 0;
	unsigned i, n = ec->len[ECHO_IDX_DE4];

	if (n == 0 || n > 18 || !is_digits(p, n))
		return false;
	for (i = 0; i < n; i++)
		v = v * 10 + (uint64_t)(p[i] - '0');
	*ret = v;
	return true;
}

static void approval_code(struct tsw_engine *e, char out[6])
{
	uint32_t workers = e->n_workers ? e->n_workers : TSW_ENGINE_STAN_WORKERS_DEFAULT;
	uint32_t span = CODE_SPACE / workers ? CODE_SPACE / workers : 1;
	uint32_t v = (e->worker_id * span + e->standin_seq++ % span) % CODE_SPACE;
	int i;

	out[0] = 'S';
	for (i = 5; i >= 1; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* The operator's rules, in the order an operator reads them. */
static enum tsw_standin_result judge(const struct tsw_engine *e, bool has_amount, uint64_t amount,
				     uint8_t mode, uint8_t assurance)
{
	if (!has_amount || amount > e->cfg.standin_max_amount)
		return TSW_STANDIN_DECLINED_AMOUNT;
	if (mode >= TSW_POS_MODE_MAX || !(e->cfg.standin_modes & (1u << mode)))
		return TSW_STANDIN_DECLINED_MODE;
	if (assurance < e->cfg.standin_min_assurance)
		return TSW_STANDIN_DECLINED_ASSURANCE;
	return TSW_STANDIN_APPROVED;
}

bool engine__standin_try(struct tsw_engine *e, struct req *r)
{
	uint64_t cap = e->cfg.standin_max_amount_per_token ? e->cfg.standin_max_amount_per_token
							   : e->cfg.standin_max_amount;
	uint64_t amount = 0, start = 0, id = 0;
	bool has_amount = echo_amount(&r->echo, &amount);
	enum tsw_standin_result res;
	int ret;

	/* the switch holds no PIN verification data: only the issuer can
	 * approve a PIN transaction */
	res = r->has_pin ? TSW_STANDIN_DECLINED_PIN
			 : judge(e, has_amount, amount, r->pos_mode, r->assurance);
	if (res != TSW_STANDIN_APPROVED) {
		engine__standin_decided(e, r, res);
		return false;
	}
	ret = exposure_charge(e->standin_exp, r->token, r->token_len, amount, cap, e->now_ns,
			      (uint64_t)e->cfg.standin_window_s * NS_PER_S, &start);
	if (ret < 0) {
		if (ret == -ENOSPC)
			TSW_COUNT(e->m->standin_exposure_full);
		engine__standin_decided(e, r, TSW_STANDIN_DECLINED_EXPOSURE);
		return false;
	}
	approval_code(e, r->approval_code);
	r->has_approval_code = true;
	ret = engine__saf_put_advice(e, r, &id);
	if (ret < 0) {
		exposure_refund(e->standin_exp, r->token, r->token_len, amount, start);
		r->has_approval_code = false;
		engine__standin_decided(e, r, TSW_STANDIN_DECLINED_UNQUEUED);
		return false;
	}
	TSW_COUNT(e->m->standin_advices_queued);
	/* its reversal, if it comes to one, waits for this advice */
	r->advised = true;
	engine__held_answer(e, r, TSW_AUTHZ_STANDIN, id);
	return true;
}
