/* Acquirer reversals. The issuer saw the switch's STAN on the original,
 * never the acquirer's, so a reversal's DE90 must name the original by
 * the switch STAN. Each forwarded original is remembered under a hash of
 * (token, acquirer DE11, DE7, DE41, DE32, the connection's peer address)
 * in a bounded direct-mapped table; a reversal whose DE90 names a
 * remembered original of the same acquirer gets DE90 rewritten, an
 * unknown one is forwarded as it came. The acquirer's identity is in the
 * key so that nobody who merely knows a token and a trace can reverse
 * another acquirer's original (and take its limited use back). A 64-bit
 * hash collision (2^-64) would rewrite to another original's STAN.
 *
 * One table serves every worker (struct tsw_acq_reversals, made by the
 * server and named in each engine's config; an engine without one makes
 * its own): with SO_REUSEPORT a reversal often comes in on another
 * worker than its original. Slots are read and written by any worker
 * without a lock: each carries a sequence number (a seqlock). A writer
 * takes a slot by moving the sequence from even to odd with a
 * compare-and-swap and gives up when another writer holds it (the write
 * is lost, as if a newer original had pushed this one out); a reader
 * retries a few times while a writer is in the slot, then takes the
 * entry as absent. Losing an entry never spends a use twice: its
 * reversal goes as it came and gives nothing back.
 *
 * Limited uses. An original whose approval consumed a limited use
 * (engine__acq_rev_use_consumed) is flagged. A reversal whose DE90 names it
 * remembers, in its own request, which original it matched (its hash
 * and switch STAN: the entry as it was then); when the issuer answers
 * that reversal 00, engine__acq_rev_take_use clears the flag of exactly that
 * original and the engine gives the use back once: a repeated reversal
 * (0401, 0421) finds the flag cleared, and a reversal that matched
 * nothing gives nothing back. Every flag operation checks the switch
 * STAN as well as the hash: an acquirer that reuses a trace (DE11, DE7)
 * makes a new original under the same key, whose flag is its own. An
 * original pushed out of the table gives nothing back. The original's
 * request remembers whether it set the flag (use_flagged): when its
 * approval turns out undelivered and the switch reverses it itself, a
 * flag that was set but is gone now (taken, or pushed out with its
 * entry) may have been given back already, so the use stays spent; a
 * flag never set (the entry was gone or busy at the approval) cannot
 * have been taken by anyone, so that reversal gives the use back.
 *
 * Size: the table's entries (a power of two: the slot is the hash
 * masked). An original pushed out by another one is
 * counted in acq_reversals_evicted by the worker that pushed it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "acq_reversal.h"
#include "engine_int.h"

/* One original per slot. Every field is read and written with __atomic
 * builtins: other workers share it. */
struct acq_rev_ent {
	uint32_t seq;	    /* odd while a writer is in the slot */
	uint32_t stan;	    /* an original: the switch STAN it went out with */
	uint64_t hash;	    /* 0: empty */
	uint32_t de7;	    /* an original: its DE7 (10 digits) as a number */
	uint32_t use_consumed; /* an original: its approval consumed a limited use */
};

struct tsw_acq_reversals {
	struct acq_rev_ent *ent;
	uint32_t mask; /* entries - 1 */
};

/* A reader gives up after this many tries while writers hold the slot. */
#define READ_TRIES 4
/* Up to 19 token digits, DE11 6, DE7 10, DE41 8, DE32 11, the peer 8
 * (longer values are cut, the same way on both sides). */
#define KEY_PART_MAX 64u
#define KEY_PARTS 6u

struct ent_view {
	uint64_t hash;
	uint32_t stan, de7, use_consumed;
};

static bool slot_lock(struct acq_rev_ent *s, uint32_t *ret_seq)
{
	uint32_t q = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);

	if (q & 1)
		return false;
	if (!__atomic_compare_exchange_n(&s->seq, &q, q + 1, false, __ATOMIC_ACQUIRE,
					 __ATOMIC_RELAXED))
		return false;
	/* the odd sequence is seen before any field changes */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	*ret_seq = q;
	return true;
}

static void slot_unlock(struct acq_rev_ent *s, uint32_t q)
{
	__atomic_store_n(&s->seq, q + 2, __ATOMIC_RELEASE);
}

#define LD(p) __atomic_load_n(p, __ATOMIC_RELAXED)
#define ST(p, v) __atomic_store_n(p, v, __ATOMIC_RELAXED)

static bool slot_read(const struct acq_rev_ent *s, struct ent_view *v)
{
	for (int i = 0; i < READ_TRIES; i++) {
		uint32_t q = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);

		if (q & 1)
			continue;
		v->hash = LD(&s->hash);
		v->stan = LD(&s->stan);
		v->de7 = LD(&s->de7);
		v->use_consumed = LD(&s->use_consumed);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (LD(&s->seq) == q)
			return true;
	}
	return false;
}

int tsw_acq_reversals_new(uint32_t entries, struct tsw_acq_reversals **ret_table)
{
	struct tsw_acq_reversals *t;

	if (entries == 0 || (entries & (entries - 1)) ||
	    entries > TSW_CONFIG_TABLE_MEMORY_MAX * 64u)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ent = calloc(entries, sizeof(*t->ent));
	if (!t->ent) {
		free(t);
		return -ENOMEM;
	}
	t->mask = entries - 1;
	*ret_table = t;
	return 0;
}

void tsw_acq_reversals_free(struct tsw_acq_reversals *t)
{
	if (!t)
		return;
	free(t->ent);
	free(t);
}

struct key_part {
	const uint8_t *p;
	size_t len;
};

static uint64_t key_of(const struct key_part parts[KEY_PARTS])
{
	uint8_t buf[KEY_PARTS * (1 + KEY_PART_MAX)];
	size_t n = 0;
	uint64_t h;

	for (size_t i = 0; i < KEY_PARTS; i++) {
		size_t k = parts[i].len < KEY_PART_MAX ? parts[i].len : KEY_PART_MAX;

		buf[n++] = (uint8_t)k;
		if (k)
			memcpy(buf + n, parts[i].p, k);
		n += k;
	}
	h = XXH3_64bits(buf, n);
	return h ? h : 1;
}

static struct key_part field_part(const struct tsw_iso_msg *m, unsigned f)
{
	if (!tsw_iso_has(m, f))
		return (struct key_part){NULL, 0};
	return (struct key_part){tsw_iso_ptr(m, f), m->f[f].len};
}

/* (token, de11, de7, DE41 of m, DE32 of m, the peer of slot) */
static uint64_t key_with(const struct tsw_engine *e, uint32_t slot, const char *token,
			 size_t token_len, const uint8_t *de11, size_t de11_len, const uint8_t *de7,
			 const struct tsw_iso_msg *m)
{
	const uint64_t *peer = &e->conns[slot].peer_id;
	const struct key_part parts[KEY_PARTS] = {
	    {(const uint8_t *)token, token_len},
	    {de11, de11_len},
	    {de7, 10},
	    field_part(m, 41),
	    field_part(m, 32),
	    {(const uint8_t *)peer, sizeof(*peer)},
	};

	return key_of(parts);
}

static bool de7_number(const uint8_t *p, uint32_t *ret)
{
	uint64_t v = 0;

	for (int i = 0; i < 10; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*ret = (uint32_t)v;
	return true;
}

static void de7_text(uint32_t v, char out[10])
{
	for (int i = 9; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

static struct acq_rev_ent *orig_slot(const struct tsw_acq_reversals *t, uint64_t h)
{
	return &t->ent[h & t->mask];
}

int engine__acq_rev_init(struct tsw_engine *e)
{
	uint32_t n = e->cfg.acq_reversal_memory;
	int r;

	TSW_GAUGE_SET(e->m->acq_reversals_capacity, n);
	if (e->acq_rev) {
		/* one table for all: worker 0 reports it, so the sum is right */
		TSW_GAUGE_SET(e->m->acq_reversals_capacity,
			      e->worker_id == 0 ? e->acq_rev->mask + 1 : 0);
		return 0;
	}
	r = tsw_acq_reversals_new(n, &e->acq_rev_own);
	if (r < 0)
		return r;
	e->acq_rev = e->acq_rev_own;
	return 0;
}

uint32_t engine__acq_rev_capacity(const struct tsw_engine *e)
{
	return e->acq_rev ? e->acq_rev->mask + 1 : 0;
}

void engine__acq_rev_free(struct tsw_engine *e)
{
	tsw_acq_reversals_free(e->acq_rev_own);
	e->acq_rev_own = NULL;
	e->acq_rev = NULL;
}

void tsw_engine_acq_peer(struct tsw_engine *e, uint32_t slot, const struct sockaddr *sa,
			 size_t sa_len)
{
	const void *addr = NULL;
	size_t len = 0;

	if (slot >= e->cfg.max_conns)
		return;
	/* the host, not the port: an acquirer's connections share it */
	if (sa && sa->sa_family == AF_INET && sa_len >= sizeof(struct sockaddr_in)) {
		addr = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		len = sizeof(struct in_addr);
	} else if (sa && sa->sa_family == AF_INET6 && sa_len >= sizeof(struct sockaddr_in6)) {
		addr = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		len = sizeof(struct in6_addr);
	}
	e->conns[slot].peer_id = addr ? XXH3_64bits(addr, len) : 0;
}

uint64_t engine__acq_rev_key(const struct tsw_engine *e, uint32_t slot, const char *token,
			     size_t token_len, const struct tsw_iso_msg *m)
{
	uint64_t h;

	if (!e->acq_rev || !tsw_iso_has(m, 11) || !tsw_iso_has(m, 7) || m->f[7].len != 10)
		return 0;
	h = key_with(e, slot, token, token_len, tsw_iso_ptr(m, 11), m->f[11].len,
		     tsw_iso_ptr(m, 7), m);
	/* the slot is written when the original is forwarded, after the
	 * decrypt and the encode: its cache miss overlaps them */
	__builtin_prefetch(orig_slot(e->acq_rev, h), 1);
	return h;
}

void engine__acq_rev_remember(struct tsw_engine *e, uint64_t h, const struct tsw_iso_msg *m,
			      uint32_t stan)
{
	struct acq_rev_ent *s;
	uint32_t q, de7;
	uint64_t old;

	if (!h || !de7_number(tsw_iso_ptr(m, 7), &de7))
		return;
	s = orig_slot(e->acq_rev, h);
	if (!slot_lock(s, &q)) {
		/* another worker is writing this slot: as if pushed out */
		TSW_COUNT(e->m->acq_reversals_evicted);
		return;
	}
	old = LD(&s->hash);
	if (old && old != h)
		TSW_COUNT(e->m->acq_reversals_evicted);
	ST(&s->hash, h);
	ST(&s->stan, stan);
	ST(&s->de7, de7);
	ST(&s->use_consumed, 0u);
	slot_unlock(s, q);
}

int engine__acq_rev_de90(struct tsw_engine *e, uint32_t slot, const char *token, size_t token_len,
			 const struct tsw_iso_msg *m, char out[TSW_ENGINE_DE90_LEN],
			 struct acq_rev_match *ret_match)
{
	struct ent_view v;
	const uint8_t *de90;
	uint64_t h;

	if (!e->acq_rev || !tsw_iso_has(m, 90) || m->f[90].len != TSW_ENGINE_DE90_LEN)
		return 0;
	de90 = tsw_iso_ptr(m, 90);
	h = key_with(e, slot, token, token_len, de90 + TSW_ENGINE_DE90_OFF_STAN, 6,
		     de90 + TSW_ENGINE_DE90_OFF_DE7, m);
	if (!slot_read(orig_slot(e->acq_rev, h), &v) || v.hash != h)
		return 0;
	/* the reversal's answer acts on this original, as it is now */
	ret_match->hash = h;
	ret_match->stan = v.stan;
	memcpy(out, de90, TSW_ENGINE_DE90_LEN);
	engine__fmt6(v.stan, out + TSW_ENGINE_DE90_OFF_STAN);
	de7_text(v.de7, out + TSW_ENGINE_DE90_OFF_DE7);
	return 1;
}

enum { FLAG_BUSY = -2, FLAG_GONE = -1 };

/* Sets (flag 1) or takes (flag 0) the use flag of original h. Returns
 * FLAG_GONE when the slot holds another original (or none, or one
 * under the same key that went out with another switch STAN), FLAG_BUSY
 * when other writers held it for READ_TRIES tries (nothing changes),
 * else the flag as it was. */
static int use_flag(struct tsw_engine *e, uint64_t h, uint32_t stan, uint32_t flag)
{
	struct acq_rev_ent *s = orig_slot(e->acq_rev, h);
	uint32_t q, was;
	int i;

	for (i = 0; i < READ_TRIES && !slot_lock(s, &q); i++)
		;
	if (i == READ_TRIES)
		return FLAG_BUSY;
	if (LD(&s->hash) != h || LD(&s->stan) != stan) {
		slot_unlock(s, q);
		return FLAG_GONE;
	}
	was = LD(&s->use_consumed);
	ST(&s->use_consumed, flag);
	slot_unlock(s, q);
	return (int)was;
}

void engine__acq_rev_use_consumed(struct tsw_engine *e, struct req *r)
{
	r->use_flagged = e->acq_rev && r->acq_rev_key && use_flag(e, r->acq_rev_key, (uint32_t)r->key, 1) >= 0;
}

bool engine__acq_rev_disown_use(struct tsw_engine *e, const struct req *r)
{
	/* never flagged: no acquirer reversal can have taken it */
	if (!r->use_flagged)
		return true;
	/* still flagged: ours now. Taken, pushed out with its entry, or a
	 * busy slot: an acquirer reversal may have given it back */
	return use_flag(e, r->acq_rev_key, (uint32_t)r->key, 0) == 1;
}

bool engine__acq_rev_take_use(struct tsw_engine *e, const struct req *r)
{
	if (!e->acq_rev || !r->rev_match.hash)
		return false;
	return use_flag(e, r->rev_match.hash, r->rev_match.stan, 0) == 1;
}
