/* The software backend: keys in one locked, dump-excluded mapping of
 * fixed slots, derived ICC master keys in a second one (a direct-mapped
 * cache under per-shard mutexes), one set of EVP contexts per session.
 * The public functions (hsm.c) have checked every argument before an
 * entry here runs. */
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "internal.h"
#include "tsw/error.h"

#define MAX_KEYS_LIMIT (1u << 20)
#define ICC_CACHE_LIMIT (1u << 24)
#define CACHE_SHARDS 64u

struct cache_entry {
	uint32_t serial; /* of the IMK it was derived under; 0: empty */
	uint8_t psn;
	uint8_t pan_len;
	char pan[TSW_HSM_PAN_DIGITS_MAX];
	struct tdes2_ks ks; /* the ICC master key, ready: no key schedule on a hit */
};

struct soft_hsm {
	struct tsw_hsm base;
	EVP_CIPHER *ciphers[CIPHER_MAX];
	EVP_MAC *cmac;

	pthread_mutex_t key_lock;
	struct soft_key *keys; /* max_keys slots, locked */
	size_t keys_bytes;
	uint32_t max_keys;
	uint32_t free_head; /* slot index + 1; 0: none free */
	uint64_t keys_in_use;
	uint32_t next_serial;
	bool keys_locked;

	struct cache_entry *cache; /* cache_n entries, locked; NULL: no cache */
	size_t cache_bytes;
	uint32_t cache_n;
	bool cache_locked;
	pthread_mutex_t shard[CACHE_SHARDS];

	uint64_t key_full, hits, misses; /* atomics */
	uint64_t cache_used; /* entries holding a key; under their shard locks, read atomically */
};

static const struct tsw_hsm_ops soft_ops;

static void *locked_map(size_t bytes, bool *ret_locked)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, bytes, MADV_DONTDUMP);
	*ret_locked = mlock(p, bytes) == 0;
	return p;
}

static void locked_unmap(void *p, size_t bytes)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, bytes);
	munlock(p, bytes);
	munmap(p, bytes);
}

static struct soft_hsm *soft(const struct tsw_hsm *h)
{
	return (struct soft_hsm *)h;
}

static const struct soft_key *skey(const struct tsw_hsm_key *k)
{
	return (const struct soft_key *)k;
}

static void soft_close(struct tsw_hsm *hb)
{
	struct soft_hsm *h = soft(hb);

	locked_unmap(h->keys, h->keys_bytes);
	locked_unmap(h->cache, h->cache_bytes);
	for (unsigned i = 0; i < CIPHER_MAX; i++)
		EVP_CIPHER_free(h->ciphers[i]);
	EVP_MAC_free(h->cmac);
	for (unsigned i = 0; i < CACHE_SHARDS; i++)
		pthread_mutex_destroy(&h->shard[i]);
	pthread_mutex_destroy(&h->key_lock);
	free(h);
}

static int fetch_ciphers(struct soft_hsm *h)
{
	static const char *const names[CIPHER_MAX] = {
	    [CIPHER_AES128_ECB] = "AES-128-ECB",
	    [CIPHER_AES256_ECB] = "AES-256-ECB",
	};

	for (unsigned i = 0; i < CIPHER_MAX; i++) {
		h->ciphers[i] = EVP_CIPHER_fetch(NULL, names[i], NULL);
		if (!h->ciphers[i])
			return -EIO;
	}
	h->cmac = EVP_MAC_fetch(NULL, "CMAC", NULL);
	return h->cmac ? 0 : -EIO;
}

int tsw_hsm_soft_open(const struct tsw_hsm_soft_config *cfg, struct tsw_hsm **ret_hsm)
{
	struct tsw_hsm_soft_config c = {0};
	struct soft_hsm *h;
	int r;

	if (cfg)
		c = *cfg;
	if (c.max_keys == 0)
		c.max_keys = TSW_HSM_MAX_KEYS_DEFAULT;
	if (c.icc_cache_entries == 0)
		c.icc_cache_entries = TSW_HSM_ICC_CACHE_DEFAULT;
	if (c.max_keys > MAX_KEYS_LIMIT ||
	    (c.icc_cache_entries != UINT32_MAX && c.icc_cache_entries > ICC_CACHE_LIMIT))
		return -TSW_E_BAD_INPUT;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->base.ops = &soft_ops;
	pthread_mutex_init(&h->key_lock, NULL);
	for (unsigned i = 0; i < CACHE_SHARDS; i++)
		pthread_mutex_init(&h->shard[i], NULL);
	h->next_serial = 1;
	r = fetch_ciphers(h);
	if (r < 0)
		goto err_close;
	r = -ENOMEM;
	h->max_keys = c.max_keys;
	h->keys_bytes = (size_t)c.max_keys * sizeof(struct soft_key);
	h->keys = locked_map(h->keys_bytes, &h->keys_locked);
	if (!h->keys)
		goto err_close;
	for (uint32_t i = 0; i < c.max_keys; i++)
		h->keys[i].next_free = i + 2 <= c.max_keys ? i + 2 : 0;
	h->free_head = 1;
	if (c.icc_cache_entries != UINT32_MAX) {
		h->cache_n = c.icc_cache_entries;
		h->cache_bytes = (size_t)h->cache_n * sizeof(struct cache_entry);
		h->cache = locked_map(h->cache_bytes, &h->cache_locked);
		if (!h->cache)
			goto err_close;
	}
	*ret_hsm = &h->base;
	return 0;

err_close:
	soft_close(&h->base);
	return r;
}

int tsw_hsm_soft_stats(const struct tsw_hsm *hb, struct tsw_hsm_soft_stats *ret)
{
	struct soft_hsm *h = soft(hb);

	if (!hb || hb->ops != &soft_ops)
		return -TSW_E_BAD_INPUT;
	pthread_mutex_lock(&h->key_lock);
	ret->keys_in_use = h->keys_in_use;
	pthread_mutex_unlock(&h->key_lock);
	ret->key_full = __atomic_load_n(&h->key_full, __ATOMIC_RELAXED);
	ret->icc_cache_hits = __atomic_load_n(&h->hits, __ATOMIC_RELAXED);
	ret->icc_cache_misses = __atomic_load_n(&h->misses, __ATOMIC_RELAXED);
	ret->icc_cache_used = __atomic_load_n(&h->cache_used, __ATOMIC_RELAXED);
	ret->locked = h->keys_locked && (!h->cache || h->cache_locked);
	return 0;
}

/* Takes a slot and fills it with bytes (wiped by the caller). */
static int key_new(struct soft_hsm *h, enum tsw_hsm_kind kind, enum tsw_hsm_alg alg,
		   const uint8_t *bytes, size_t len, struct tsw_hsm_key **ret_key)
{
	struct tsw_hsm_key_info info = {.kind = (uint8_t)kind, .alg = (uint8_t)alg};
	struct soft_key *k;
	int r;

	r = hsm__soft_kcv(alg, bytes, info.kcv, &info.kcv_len);
	if (r < 0)
		return r;
	pthread_mutex_lock(&h->key_lock);
	if (h->free_head == 0) {
		pthread_mutex_unlock(&h->key_lock);
		__atomic_fetch_add(&h->key_full, 1, __ATOMIC_RELAXED);
		return -TSW_E_FULL;
	}
	k = &h->keys[h->free_head - 1];
	h->free_head = k->next_free;
	h->keys_in_use++;
	k->serial = h->next_serial++;
	pthread_mutex_unlock(&h->key_lock);
	k->base.hsm = &h->base;
	k->base.info = info;
	k->len = (uint8_t)len;
	memcpy(k->bytes, bytes, len);
	/* TDES keys are used by their schedules, made once here */
	if (alg == TSW_HSM_TDES2 || alg == TSW_HSM_TDES3)
		hsm__tdes_key_set(k);
	*ret_key = &k->base;
	return 0;
}

static int soft_key_import(struct tsw_hsm *h, enum tsw_hsm_kind kind, enum tsw_hsm_alg alg,
			   const uint8_t *bytes, size_t len, struct tsw_hsm_key **ret_key)
{
	return key_new(soft(h), kind, alg, bytes, len, ret_key);
}

static int cmp_serial(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Wipes the ICC master keys derived under the IMKs of serials[0..n)
 * (sorted): a key that is freed (retired, replaced at a reload) leaves
 * nothing it produced in memory. One scan of the whole cache, shard by
 * shard, for all of them: keys are freed a set at a time, at reloads. */
static void cache_forget(struct soft_hsm *h, const uint32_t *serials, size_t n)
{
	for (uint32_t sh = 0; n && sh < CACHE_SHARDS && sh < h->cache_n; sh++) {
		pthread_mutex_lock(&h->shard[sh]);
		for (uint32_t i = sh; i < h->cache_n; i += CACHE_SHARDS) {
			if (!h->cache[i].serial ||
			    !bsearch(&h->cache[i].serial, serials, n, sizeof(*serials), cmp_serial))
				continue;
			OPENSSL_cleanse(&h->cache[i], sizeof(h->cache[i]));
			__atomic_fetch_sub(&h->cache_used, 1, __ATOMIC_RELAXED);
		}
		pthread_mutex_unlock(&h->shard[sh]);
	}
}

/* Wipes k's slot and returns it to the free list. */
static void slot_free(struct soft_hsm *h, struct soft_key *k)
{
	uint32_t slot = (uint32_t)(k - h->keys);

	OPENSSL_cleanse(k, sizeof(*k));
	pthread_mutex_lock(&h->key_lock);
	k->next_free = h->free_head;
	h->free_head = slot + 1;
	h->keys_in_use--;
	pthread_mutex_unlock(&h->key_lock);
}

static bool has_cached(const struct soft_hsm *h, const struct tsw_hsm_key *kb)
{
	return h->cache && kb->info.kind == TSW_HSM_IMK_AC &&
	       __atomic_load_n(&((const struct soft_key *)kb)->cached, __ATOMIC_RELAXED);
}

static void soft_key_free(struct tsw_hsm_key *kb)
{
	struct soft_key *k = (struct soft_key *)kb;
	struct soft_hsm *h = soft(kb->hsm);

	if (has_cached(h, kb))
		cache_forget(h, &k->serial, 1);
	slot_free(h, k);
}

static void soft_keys_free(struct tsw_hsm_key *const *keys, size_t n)
{
	struct soft_hsm *h = NULL;
	uint32_t *serials;
	size_t m = 0;

	for (size_t i = 0; i < n && !h; i++)
		h = keys[i] ? soft(keys[i]->hsm) : NULL;
	if (!h)
		return;
	serials = malloc(n * sizeof(*serials));
	for (size_t i = 0; serials && i < n; i++)
		if (keys[i] && has_cached(h, keys[i]))
			serials[m++] = ((struct soft_key *)keys[i])->serial;
	if (!serials) {
		/* no memory for the list: one scan per key, as key_free does */
		for (size_t i = 0; i < n; i++)
			soft_key_free(keys[i]);
		return;
	}
	qsort(serials, m, sizeof(*serials), cmp_serial);
	cache_forget(h, serials, m);
	free(serials);
	for (size_t i = 0; i < n; i++)
		if (keys[i])
			slot_free(h, (struct soft_key *)keys[i]);
}

static void soft_session_close(struct tsw_hsm_session *sb)
{
	struct soft_session *s = (struct soft_session *)sb;

	for (unsigned i = 0; i < CIPHER_MAX; i++)
		EVP_CIPHER_CTX_free(s->ctx[i]); /* wipes the key schedule */
	for (unsigned i = 0; i < CMAC_MAX; i++)
		EVP_MAC_CTX_free(s->cmac[i]);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

/* Binds each of the session's CMAC contexts to its cipher, once. */
static int cmac_open(struct soft_hsm *h, struct soft_session *s)
{
	char names[CMAC_MAX][sizeof("AES-128-CBC")] = {
	    [CMAC_AES128] = "AES-128-CBC",
	    [CMAC_AES256] = "AES-256-CBC",
	};

	for (unsigned i = 0; i < CMAC_MAX; i++) {
		OSSL_PARAM p[2] = {
		    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, names[i], 0),
		    OSSL_PARAM_construct_end(),
		};

		s->cmac[i] = EVP_MAC_CTX_new(h->cmac);
		if (!s->cmac[i] || !EVP_MAC_CTX_set_params(s->cmac[i], p))
			return -EIO;
	}
	return 0;
}

static int soft_session_open(struct tsw_hsm *hb, struct tsw_hsm_session **ret_s)
{
	/* any key will do to bind each context to its cipher once; every
	 * use sets its own */
	static const uint8_t key0[TSW_HSM_KEY_BYTES_MAX], iv0[AES_BLOCK];
	struct soft_hsm *h = soft(hb);
	struct soft_session *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->base.hsm = hb;
	for (unsigned i = 0; i < CIPHER_MAX; i++) {
		s->ctx[i] = EVP_CIPHER_CTX_new();
		if (!s->ctx[i] ||
		    !EVP_CipherInit_ex(s->ctx[i], h->ciphers[i], NULL, key0, iv0, 1) ||
		    !EVP_CIPHER_CTX_set_padding(s->ctx[i], 0)) {
			soft_session_close(&s->base);
			return -EIO;
		}
	}
	if (cmac_open(h, s) < 0) {
		soft_session_close(&s->base);
		return -EIO;
	}
	*ret_s = &s->base;
	return 0;
}

/* The ICC master key of pan/psn under imk, ready (its schedules), from
 * the cache or derived (and then cached). The caller wipes *ret_ks. */
static void icc_mk(struct soft_session *s, const struct tsw_hsm_key *imkb, const char *pan,
		   size_t pan_len, uint8_t psn, struct tdes2_ks *ret_ks)
{
	struct soft_hsm *h = soft(s->base.hsm);
	const struct soft_key *imk = skey(imkb);
	uint8_t mk[TDES2_KEY_BYTES];
	struct cache_entry *e = NULL;
	pthread_mutex_t *lock = NULL;
	uint64_t hv;

	if (h->cache) {
		hv = XXH3_64bits_withSeed(pan, pan_len, (uint64_t)imk->serial << 8 | psn);
		e = &h->cache[hv % h->cache_n];
		lock = &h->shard[(hv % h->cache_n) % CACHE_SHARDS];
		pthread_mutex_lock(lock);
		if (e->serial == imk->serial && e->psn == psn && e->pan_len == pan_len &&
		    memcmp(e->pan, pan, pan_len) == 0) {
			*ret_ks = e->ks;
			pthread_mutex_unlock(lock);
			__atomic_fetch_add(&h->hits, 1, __ATOMIC_RELAXED);
			return;
		}
		pthread_mutex_unlock(lock);
	}
	hsm__emv_icc_mk(&imk->ks, pan, pan_len, psn, mk);
	hsm__tdes2_ks_set(mk, ret_ks);
	OPENSSL_cleanse(mk, sizeof(mk));
	if (!e)
		return;
	__atomic_store_n(&((struct soft_key *)imk)->cached, true, __ATOMIC_RELAXED);
	pthread_mutex_lock(lock);
	if (!e->serial)
		__atomic_fetch_add(&h->cache_used, 1, __ATOMIC_RELAXED);
	e->serial = imk->serial;
	e->psn = psn;
	e->pan_len = (uint8_t)pan_len;
	memcpy(e->pan, pan, pan_len);
	e->ks = *ret_ks;
	pthread_mutex_unlock(lock);
	__atomic_fetch_add(&h->misses, 1, __ATOMIC_RELAXED);
}

static int soft_derive_icc_mk(struct tsw_hsm_session *sb, const struct tsw_hsm_key *imk,
			      const char *pan, size_t pan_len, uint8_t psn,
			      struct tsw_hsm_key **ret_key)
{
	uint8_t mk[16];
	int r;

	hsm__emv_icc_mk(&skey(imk)->ks, pan, pan_len, psn, mk);
	r = key_new(soft(sb->hsm), TSW_HSM_ICC_MK, TSW_HSM_TDES2, mk, sizeof(mk), ret_key);
	OPENSSL_cleanse(mk, sizeof(mk));
	return r;
}

static int soft_derive_session_key(struct tsw_hsm_session *sb, const struct tsw_hsm_key *mk,
				   const struct tsw_hsm_arqc_input *in,
				   struct tsw_hsm_key **ret_key)
{
	uint8_t sk[16];
	int r;

	r = hsm__emv_session_key(&skey(mk)->ks, in, sk);
	if (r == 0)
		r = key_new(soft(sb->hsm), TSW_HSM_SESSION_KEY, TSW_HSM_TDES2, sk, sizeof(sk),
			    ret_key);
	OPENSSL_cleanse(sk, sizeof(sk));
	return r;
}

static int soft_arqc_generate(struct tsw_hsm_session *sb, const struct tsw_hsm_key *imk,
			      const char *pan, size_t pan_len, uint8_t psn,
			      const struct tsw_hsm_arqc_input *in, uint8_t ret_arqc[8])
{
	struct tdes2_ks mk;
	int r;

	icc_mk((struct soft_session *)sb, imk, pan, pan_len, psn, &mk);
	r = hsm__emv_arqc(&mk, in, ret_arqc);
	hsm__tdes2_ks_wipe(&mk);
	return r;
}

static int soft_arqc_verify(struct tsw_hsm_session *sb, const struct tsw_hsm_key *imk,
			    const char *pan, size_t pan_len, uint8_t psn,
			    const struct tsw_hsm_arqc_input *in)
{
	uint8_t want[8];
	int r;

	r = soft_arqc_generate(sb, imk, pan, pan_len, psn, in, want);
	if (r == 0 && CRYPTO_memcmp(want, in->arqc, sizeof(want)) != 0)
		r = -TSW_E_CRYPTOGRAM;
	return r;
}

static int soft_arpc(struct tsw_hsm_session *sb, const struct tsw_hsm_key *imk, const char *pan,
		     size_t pan_len, uint8_t psn, const struct tsw_hsm_arqc_input *in,
		     const struct tsw_hsm_arpc_params *p, uint8_t *out, size_t *ret_len)
{
	struct tdes2_ks mk;
	int r;

	icc_mk((struct soft_session *)sb, imk, pan, pan_len, psn, &mk);
	r = hsm__emv_arpc(&mk, in, p, out, ret_len);
	hsm__tdes2_ks_wipe(&mk);
	return r;
}

static int soft_retail_mac(struct tsw_hsm_session *sb, const struct tsw_hsm_key *k,
			   enum tsw_hsm_pad pad, const uint8_t *data, size_t len,
			   uint8_t ret_mac[8])
{
	(void)sb;
	hsm__emv_retail_mac(&skey(k)->ks, pad, data, len, ret_mac);
	return 0;
}

static int soft_pin_form(struct tsw_hsm_session *sb, const struct tsw_hsm_key *k, const char *pan,
			 size_t pan_len, const char *pin, size_t pin_len, uint8_t *out)
{
	return hsm__pin_form((struct soft_session *)sb, skey(k), pan, pan_len, pin, pin_len, out);
}

static int soft_pin_verify(struct tsw_hsm_session *sb, const struct tsw_hsm_key *k, const char *pan,
			   size_t pan_len, const uint8_t *block, const char *pin, size_t pin_len)
{
	return hsm__pin_verify((struct soft_session *)sb, skey(k), pan, pan_len, block, pin,
			       pin_len);
}

static int soft_pin_translate(struct tsw_hsm_session *sb, const struct tsw_hsm_key *src,
			      const char *src_pan, size_t src_pan_len,
			      const struct tsw_hsm_key *dst, const char *dst_pan,
			      size_t dst_pan_len, const uint8_t *in, uint8_t *out)
{
	return hsm__pin_translate((struct soft_session *)sb, skey(src), src_pan, src_pan_len,
				  skey(dst), dst_pan, dst_pan_len, in, out);
}

static int soft_tavv_generate(struct tsw_hsm_session *sb, const struct tsw_hsm_key *k,
			      const struct tsw_hsm_tavv_input *in, uint8_t ret_mac[8])
{
	uint8_t msg[HSM_TAVV_MSG_MAX];
	size_t n = hsm__tavv_message(in, msg);

	return hsm__soft_cmac8((struct soft_session *)sb, (enum tsw_hsm_alg)k->info.alg,
			       skey(k)->bytes, msg, n, ret_mac);
}

static int soft_tavv_verify(struct tsw_hsm_session *sb, const struct tsw_hsm_key *k,
			    const struct tsw_hsm_tavv_input *in, const uint8_t mac[8])
{
	uint8_t want[TSW_HSM_TAVV_MAC_BYTES];
	int r = soft_tavv_generate(sb, k, in, want);

	if (r == 0 && CRYPTO_memcmp(want, mac, sizeof(want)) != 0)
		r = -TSW_E_CRYPTOGRAM;
	OPENSSL_cleanse(want, sizeof(want));
	return r;
}

static const struct tsw_hsm_ops soft_ops = {
    .name = "soft",
    .close = soft_close,
    .key_import = soft_key_import,
    .key_free = soft_key_free,
    .keys_free = soft_keys_free,
    .session_open = soft_session_open,
    .session_close = soft_session_close,
    .derive_icc_mk = soft_derive_icc_mk,
    .derive_session_key = soft_derive_session_key,
    .arqc_verify = soft_arqc_verify,
    .arqc_generate = soft_arqc_generate,
    .arpc = soft_arpc,
    .retail_mac = soft_retail_mac,
    .pin_form = soft_pin_form,
    .pin_verify = soft_pin_verify,
    .pin_translate = soft_pin_translate,
    .tavv_generate = soft_tavv_generate,
    .tavv_verify = soft_tavv_verify,
};

int tsw_hsm_soft_pin_form4_fill(struct tsw_hsm_session *sb, const struct tsw_hsm_key *k,
				const char *pan, size_t pan_len, const char *pin, size_t pin_len,
				const uint8_t fill[8], uint8_t *out)
{
	return hsm__pin_form4_fill((struct soft_session *)sb, skey(k), pan, pan_len, pin, pin_len,
				   fill, out);
}
