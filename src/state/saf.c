/* The store-and-forward queue of the state environment: reversals owed to
 * issuers, kept until acked, across restarts. An in-memory index (slots
 * in one id-ordered list, under one mutex) serves put/claim/ack/retry;
 * the state's writer thread makes puts and deletes durable in its group
 * commit. Contract: include/tsw/state.h. */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "state_int.h"
#include "tsw/error.h"
#include "tsw/state.h"

enum {
	SAF_KEY_LEN = 8,       /* big-endian disk key: cursor order is put order */
	SAF_MSG_MIN_CAP = 256, /* smallest slot buffer, bytes */
};

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool flags_valid(uint32_t flags)
{
	return !(flags & ~(TSW_STATE_SAF_ADVICE | TSW_STATE_SAF_AFTER_ADVICE)) &&
	       flags != (TSW_STATE_SAF_ADVICE | TSW_STATE_SAF_AFTER_ADVICE);
}

/* Routes with a queued advice, as a claim's scan meets them (in put
 * order): route keys 0..63 one bit each, the rest all together. */
struct advice_routes {
	uint64_t low;
	bool high;
};

static void advice_seen(struct advice_routes *a, uint32_t route)
{
	if (route < 64)
		a->low |= 1ull << route;
	else
		a->high = true;
}

static bool advice_before(const struct advice_routes *a, uint32_t route)
{
	return route < 64 ? (a->low >> route) & 1 : a->high;
}

static bool all_digits(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

static void key_of(uint64_t disk_key, uint8_t out[SAF_KEY_LEN])
{
	for (int i = SAF_KEY_LEN - 1; i >= 0; i--) {
		out[i] = (uint8_t)disk_key;
		disk_key >>= 8;
	}
}

static uint64_t key_from(const uint8_t in[SAF_KEY_LEN])
{
	uint64_t k = 0;

	for (int i = 0; i < SAF_KEY_LEN; i++)
		k = k << 8 | in[i];
	return k;
}

static uint32_t msg_cap_for(uint32_t len)
{
	uint32_t cap = SAF_MSG_MIN_CAP;

	while (cap < len)
		cap <<= 1;
	return cap;
}

static void gauge_depth(struct tsw_state *st)
{
	atomic_store_explicit(&st->c.saf_depth, st->saf.depth, memory_order_relaxed);
}

/* List and free-list helpers; the caller holds saf.lock (or is open). */
static void link_tail(struct saf_queue *q, uint32_t i)
{
	struct saf_slot *s = &q->slots[i];

	s->prev = q->tail;
	s->next = SAF_NIL;
	if (q->tail != SAF_NIL)
		q->slots[q->tail].next = i;
	else
		q->head = i;
	q->tail = i;
}

static void unlink_slot(struct saf_queue *q, uint32_t i)
{
	struct saf_slot *s = &q->slots[i];

	if (s->prev != SAF_NIL)
		q->slots[s->prev].next = s->next;
	else
		q->head = s->next;
	if (s->next != SAF_NIL)
		q->slots[s->next].prev = s->prev;
	else
		q->tail = s->prev;
	s->prev = s->next = SAF_NIL;
}

static uint32_t pop_free(struct saf_queue *q)
{
	uint32_t i = q->free_head;

	if (i != SAF_NIL) {
		q->free_head = q->slots[i].next_free;
		q->slots[i].state = SAF_SLOT_FILLING;
	}
	return i;
}

static void push_free(struct saf_queue *q, uint32_t i)
{
	q->slots[i].state = SAF_SLOT_FREE;
	q->slots[i].next_free = q->free_head;
	q->free_head = i;
}

/* Makes slot i hold len bytes; allocates only when its buffer is too small. */
static int reserve_buf(struct saf_slot *s, uint32_t len)
{
	uint32_t cap;
	uint8_t *buf;

	if (s->msg_cap >= len)
		return 0;
	cap = msg_cap_for(len);
	buf = malloc(cap);
	if (buf == NULL)
		return -ENOMEM;
	free(s->msg);
	s->msg = buf;
	s->msg_cap = cap;
	return 0;
}

int state__saf_init(struct tsw_state *st, uint32_t max_entries, uint32_t lease_ms, size_t loaded)
{
	struct saf_queue *q = &st->saf;
	uint64_t items = loaded > max_entries ? loaded : max_entries;

	if (loaded > TSW_STATE_SAF_MAX_ENTRIES_LIMIT)
		return -ENOSPC;
	/* twice the items: acked slots stay taken until their delete commits */
	q->n_slots = (uint32_t)(2 * items);
	q->max_entries = max_entries;
	q->lease_ms = lease_ms;
	q->head = q->tail = SAF_NIL;
	q->next_key = 1;
	q->slots = calloc(q->n_slots, sizeof(*q->slots));
	if (q->slots == NULL)
		return -ENOMEM;
	q->free_head = SAF_NIL;
	for (uint32_t i = q->n_slots; i-- > 0;)
		push_free(q, i);
	return 0;
}

void state__saf_destroy(struct tsw_state *st)
{
	struct saf_queue *q = &st->saf;

	if (q->slots != NULL) {
		for (uint32_t i = 0; i < q->n_slots; i++)
			free(q->slots[i].msg);
		free(q->slots);
		q->slots = NULL;
	}
	pthread_mutex_destroy(&q->lock);
}

/* Appends a filled slot to the queue and queues its put; saf.lock held. */
static uint64_t publish_locked(struct tsw_state *st, uint32_t i, bool queue_put)
{
	struct saf_slot *s = &st->saf.slots[i];
	uint64_t seq;

	link_tail(&st->saf, i);
	s->state = SAF_SLOT_LIVE;
	if (queue_put)
		seq = state__enqueue_saf(st, OP_SAF_PUT, i);
	else
		seq = ++st->q_seq; /* loaded at open: already on disk */
	s->id = seq << TICKET_SLOT_BITS | i;
	return s->id;
}

int state__saf_record_decode(const void *val, size_t size, struct saf_record *ret_rec,
			     const uint8_t **ret_msg)
{
	struct saf_record rec;
	size_t hdr;

	if (size < sizeof(struct saf_record_v1))
		return -TSW_E_CORRUPT;
	memset(&rec, 0, sizeof(rec));
	memcpy(&rec, val, sizeof(struct saf_record_v1));
	if (rec.len == 0 || rec.len > TSW_STATE_SAF_MSG_MAX)
		return -TSW_E_CORRUPT;
	if (size == sizeof(struct saf_record_v1) + rec.len) {
		hdr = sizeof(struct saf_record_v1);
	} else if (size == sizeof(rec) + rec.len || size == SAF_RECORD_V2_SIZE + rec.len) {
		/* len is at the same place in every format: the size names
		 * exactly one header */
		hdr = size - rec.len;
		memcpy(&rec, val, hdr);
		if (rec.use_token_len > TSW_TOKEN_MAX_DIGITS || !flags_valid(rec.flags) ||
		    !all_digits(rec.use_token, rec.use_token_len))
			return -TSW_E_CORRUPT;
	} else {
		return -TSW_E_CORRUPT;
	}
	*ret_rec = rec;
	*ret_msg = (const uint8_t *)val + hdr;
	return 0;
}

void state__saf_record_encode(const struct saf_record *rec, const uint8_t *msg, void *out)
{
	memcpy(out, rec, sizeof(*rec));
	memcpy((uint8_t *)out + sizeof(*rec), msg, rec->len);
}

int state__saf_load(struct tsw_state *st, MDB_txn *txn)
{
	struct saf_queue *q = &st->saf;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	rc = mdb_cursor_open(txn, st->dbi_saf, &cur);
	if (rc != 0)
		return state_map_mdb(rc);
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		struct saf_record rec;
		struct saf_slot *s;
		const uint8_t *msg;
		uint32_t i;

		if (k.mv_size != SAF_KEY_LEN) {
			rc = -TSW_E_CORRUPT;
			goto out;
		}
		rc = state__saf_record_decode(v.mv_data, v.mv_size, &rec, &msg);
		if (rc < 0)
			goto out;
		i = pop_free(q); /* n_slots covers every loaded item */
		s = &q->slots[i];
		rc = reserve_buf(s, rec.len);
		if (rc < 0)
			goto out;
		memcpy(s->msg, msg, rec.len);
		s->len = rec.len;
		s->route_key = rec.route_key;
		s->use_token_len = rec.use_token_len;
		s->flags = rec.flags;
		/* formats 1 and 2 kept no put time: its age counts from the load */
		s->put_ms = rec.put_ms ? rec.put_ms : wall_ms();
		memcpy(s->use_token, rec.use_token, sizeof(s->use_token));
		s->disk_key = key_from(k.mv_data);
		q->next_key = s->disk_key + 1;
		publish_locked(st, i, false);
		q->depth++;
		count(&st->c.saf_loaded);
	}
	rc = rc == MDB_NOTFOUND ? 0 : state_map_mdb(rc);
out:
	mdb_cursor_close(cur);
	gauge_depth(st);
	return rc;
}

int state__saf_write(struct tsw_state *st, MDB_txn *txn, const struct op *op)
{
	const struct saf_slot *s = &st->saf.slots[op->slot];
	uint8_t key[SAF_KEY_LEN];
	MDB_val k = {sizeof(key), key}, v;
	struct saf_record rec;
	int rc;

	key_of(s->disk_key, key);
	if (op->kind == OP_SAF_DEL) {
		rc = mdb_del(txn, st->dbi_saf, &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : state_map_mdb(rc);
	}
	memset(&rec, 0, sizeof(rec));
	rec.route_key = s->route_key;
	rec.len = s->len;
	rec.use_token_len = s->use_token_len;
	rec.flags = s->flags;
	rec.put_ms = s->put_ms;
	memcpy(rec.use_token, s->use_token, sizeof(rec.use_token));
	v.mv_size = sizeof(rec) + s->len;
	v.mv_data = NULL;
	rc = mdb_put(txn, st->dbi_saf, &k, &v, MDB_RESERVE);
	if (rc != 0)
		return state_map_mdb(rc);
	state__saf_record_encode(&rec, s->msg, v.mv_data);
	return 0;
}

void state__saf_committed(struct tsw_state *st, const struct op *ops, uint32_t n)
{
	bool locked = false;

	for (uint32_t i = 0; i < n; i++) {
		if (ops[i].kind != OP_SAF_DEL)
			continue;
		if (!locked) {
			pthread_mutex_lock(&st->saf.lock);
			locked = true;
		}
		push_free(&st->saf, ops[i].slot);
	}
	if (locked)
		pthread_mutex_unlock(&st->saf.lock);
}

bool state__saf_acked(struct tsw_state *st, uint32_t slot)
{
	bool acked;

	pthread_mutex_lock(&st->saf.lock);
	acked = st->saf.slots[slot].state == SAF_SLOT_DELETING;
	pthread_mutex_unlock(&st->saf.lock);
	return acked;
}

int tsw_state_saf_put(struct tsw_state *st, uint32_t route_key, const uint8_t *msg, size_t len,
		      uint64_t *ret_id)
{
	return tsw_state_saf_put_use(st, route_key, 0, msg, len, NULL, 0, ret_id);
}

int tsw_state_saf_put_use(struct tsw_state *st, uint32_t route_key, uint32_t flags,
			  const uint8_t *msg, size_t len, const char *use_token, size_t use_token_len,
			  uint64_t *ret_id)
{
	struct saf_queue *q = &st->saf;
	struct saf_slot *s;
	uint64_t id;
	uint32_t i;
	int rc;

	if (msg == NULL || len == 0 || use_token_len > TSW_TOKEN_MAX_DIGITS ||
	    (use_token_len && use_token == NULL) || !flags_valid(flags))
		return -TSW_E_BAD_INPUT;
	if (len > TSW_STATE_SAF_MSG_MAX) {
		count(&st->c.saf_too_big);
		return -EMSGSIZE;
	}
	if ((flags & TSW_STATE_SAF_ADVICE) && tsw_state_degraded(st)) {
		/* an advice stands for an approval that waits for its commit:
		 * refused, the stand-in declines. A reversal is taken and held
		 * (the writer's batch has room for every slot's put): it is
		 * sent from memory and written once there is room, where a
		 * refusal would leave the money at the issuer. */
		count(&st->c.saf_refused);
		return -ENOSPC;
	}
	pthread_mutex_lock(&q->lock);
	i = q->depth < q->max_entries ? pop_free(q) : SAF_NIL;
	if (i != SAF_NIL) {
		q->depth++; /* the filling slot counts, so the bound holds */
		gauge_depth(st);
	}
	pthread_mutex_unlock(&q->lock);
	if (i == SAF_NIL) {
		count(&st->c.saf_full);
		return -EAGAIN;
	}

	/* the slot is ours alone until it is published: fill it unlocked */
	s = &q->slots[i];
	rc = reserve_buf(s, (uint32_t)len);
	if (rc < 0)
		goto err_free_slot;
	memcpy(s->msg, msg, len);
	s->len = (uint32_t)len;
	s->route_key = route_key;
	memset(s->use_token, 0, sizeof(s->use_token));
	if (use_token_len)
		memcpy(s->use_token, use_token, use_token_len);
	s->use_token_len = (uint8_t)use_token_len;
	s->flags = flags;
	s->put_ms = wall_ms();
	s->attempts = 0;
	s->claimed = false;
	s->not_before_ms = 0;
	s->lease_until_ms = 0;

	pthread_mutex_lock(&q->lock);
	s->disk_key = q->next_key++;
	q->next_due_ms = 0; /* due now */
	/* the put is queued under the lock: an ack (and its delete) can only
	 * follow it */
	id = publish_locked(st, i, true);
	pthread_mutex_unlock(&q->lock);
	count(&st->c.saf_puts);
	*ret_id = id;
	return 0;

err_free_slot:
	pthread_mutex_lock(&q->lock);
	push_free(q, i);
	q->depth--;
	gauge_depth(st);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

bool tsw_state_saf_durable(const struct tsw_state *st, uint64_t id)
{
	return tsw_state_durable(st, id);
}

/* Claims up to max due items, oldest first; with filter, only those of
 * route_key (the others still count for the next due time). */
static int claim(struct tsw_state *st, bool filter, uint32_t route_key, uint32_t max,
		 struct tsw_saf_item *ret_items, size_t *ret_n)
{
	struct saf_queue *q = &st->saf;
	uint64_t now, expired = 0, min_due = UINT64_MAX;
	struct advice_routes adv = {0};
	uint32_t i;
	size_t n = 0;

	if (ret_items == NULL || ret_n == NULL)
		return -TSW_E_BAD_INPUT;
	pthread_mutex_lock(&q->lock);
	now = st->clock_ms(st->clock_arg);
	if (now < q->next_due_ms)
		goto out; /* nothing due: no scan */
	for (i = q->head; i != SAF_NIL && n < max; i = q->slots[i].next) {
		struct saf_slot *s = &q->slots[i];
		struct tsw_saf_item *it;
		uint64_t due = s->not_before_ms;

		if (s->flags & TSW_STATE_SAF_ADVICE)
			advice_seen(&adv, s->route_key);
		/* waits for the advice: due when it leaves (remove_item) */
		if ((s->flags & TSW_STATE_SAF_AFTER_ADVICE) && advice_before(&adv, s->route_key))
			continue;
		if (s->claimed && s->lease_until_ms > due)
			due = s->lease_until_ms;
		if (due > now || (filter && s->route_key != route_key)) {
			/* an item of another route that is due keeps the
			 * next due time at now: the next claim scans */
			min_due = due < min_due ? due : min_due;
			continue;
		}
		if (s->claimed)
			expired++;
		s->claimed = true;
		s->lease_until_ms = now + q->lease_ms;
		min_due = s->lease_until_ms < min_due ? s->lease_until_ms : min_due;
		it = &ret_items[n++];
		it->id = s->id;
		it->route_key = s->route_key;
		it->attempts = s->attempts++;
		it->len = s->len;
		memcpy(it->msg, s->msg, s->len);
	}
	/* a full scan knows the next due time; one cut short by max does not */
	q->next_due_ms = i == SAF_NIL ? min_due : 0;
out:
	pthread_mutex_unlock(&q->lock);
	atomic_fetch_add_explicit(&st->c.saf_claims, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->c.saf_lease_expired, expired, memory_order_relaxed);
	*ret_n = n;
	return 0;
}

int tsw_state_saf_claim(struct tsw_state *st, uint32_t worker, uint32_t max,
			struct tsw_saf_item *ret_items, size_t *ret_n)
{
	(void)worker; /* leases are not tied to a worker: ack and retry take the id */
	return claim(st, false, 0, max, ret_items, ret_n);
}

int tsw_state_saf_claim_route(struct tsw_state *st, uint32_t worker, uint32_t route_key,
			      uint32_t max, struct tsw_saf_item *ret_items, size_t *ret_n)
{
	(void)worker;
	return claim(st, true, route_key, max, ret_items, ret_n);
}

/* The live slot of id, or NULL; caller holds saf.lock. */
static struct saf_slot *live_slot(struct saf_queue *q, uint64_t id)
{
	uint32_t i = (uint32_t)(id & ((1u << TICKET_SLOT_BITS) - 1));

	if (i >= q->n_slots || q->slots[i].state != SAF_SLOT_LIVE || q->slots[i].id != id)
		return NULL;
	return &q->slots[i];
}

static int remove_item(struct tsw_state *st, uint64_t id, bool return_use);

int tsw_state_saf_ack(struct tsw_state *st, uint64_t id)
{
	return remove_item(st, id, true);
}

int tsw_state_saf_settle(struct tsw_state *st, uint64_t id)
{
	return remove_item(st, id, false);
}

static int remove_item(struct tsw_state *st, uint64_t id, bool return_use)
{
	struct saf_queue *q = &st->saf;
	char use_token[TSW_TOKEN_MAX_DIGITS];
	uint8_t use_token_len;
	struct saf_slot *s;

	pthread_mutex_lock(&q->lock);
	s = live_slot(q, id);
	if (s == NULL) {
		pthread_mutex_unlock(&q->lock);
		return -TSW_E_NOT_FOUND;
	}
	unlink_slot(q, (uint32_t)(s - q->slots));
	s->state = SAF_SLOT_DELETING;
	s->claimed = false;
	q->depth--;
	gauge_depth(st);
	state__enqueue_saf(st, OP_SAF_DEL, (uint32_t)(s - q->slots));
	/* a reversal waiting for this advice is due now */
	if (s->flags & TSW_STATE_SAF_ADVICE)
		q->next_due_ms = 0;
	use_token_len = s->use_token_len;
	memcpy(use_token, s->use_token, sizeof(use_token));
	pthread_mutex_unlock(&q->lock);
	count(&st->c.saf_acks);
	/* Queued after the delete, so it commits in the same batch or a
	 * later one: a crash between them keeps the use spent (the reversal
	 * is gone, it cannot be acked twice), never gives it back twice. */
	if (return_use && use_token_len &&
	    tsw_state_return_use(st, use_token, use_token_len) == 0)
		count(&st->c.saf_uses_returned);
	return 0;
}

int tsw_state_saf_retry(struct tsw_state *st, uint64_t id, uint64_t not_before_ms)
{
	struct saf_queue *q = &st->saf;
	struct saf_slot *s;

	pthread_mutex_lock(&q->lock);
	s = live_slot(q, id);
	if (s != NULL) {
		s->claimed = false;
		s->not_before_ms = not_before_ms;
		if (not_before_ms < q->next_due_ms)
			q->next_due_ms = not_before_ms;
	}
	pthread_mutex_unlock(&q->lock);
	if (s == NULL)
		return -TSW_E_NOT_FOUND;
	count(&st->c.saf_retries);
	return 0;
}

void tsw_state_saf_oldest(const struct tsw_state *st, uint64_t *ret_reversal_ms,
			  uint64_t *ret_advice_ms)
{
	/* a read: only the lock changes (as in tsw_state_stats' callers) */
	struct saf_queue *q = (struct saf_queue *)&st->saf;
	uint64_t now = wall_ms(), rev = 0, adv = 0;
	bool have_rev = false, have_adv = false;

	pthread_mutex_lock(&q->lock);
	/* the list is in put order: the first of each kind is its oldest */
	for (uint32_t i = q->head; i != SAF_NIL && !(have_rev && have_adv); i = q->slots[i].next) {
		const struct saf_slot *s = &q->slots[i];
		bool advice = s->flags & TSW_STATE_SAF_ADVICE;
		uint64_t age = now > s->put_ms ? now - s->put_ms : 0;

		if (advice && !have_adv) {
			adv = age;
			have_adv = true;
		} else if (!advice && !have_rev) {
			rev = age;
			have_rev = true;
		}
	}
	pthread_mutex_unlock(&q->lock);
	*ret_reversal_ms = rev;
	*ret_advice_ms = adv;
}
