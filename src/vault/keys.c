/* The key file and the in-memory key ring.
 *
 * File format (text, mode 0600 or stricter):
 *   # comment
 *   hmac <64 hex>          the PAN index key (HMAC-SHA-256), id 1
 *   hmac <id> <64 hex>     an index key of another id (tokvault rekey --index);
 *                          the vault names the one its index is keyed by
 *   pan <id> <64 hex>      one AES-256-GCM PAN key per line; the highest id
 *                          encrypts new writes
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "tsw/error.h"
#include "tsw/harden.h"

#define KEY_PAGE_BYTES 4096
#define KEY_FILE_MODE 0600
#define KCV_LABEL "tokswitch-vault-kcv"

_Static_assert(sizeof(struct keyring) <= KEY_PAGE_BYTES, "key ring fits one page");

static struct keyring *keyring_alloc(bool *ret_locked)
{
	void *p =
	    mmap(NULL, KEY_PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, KEY_PAGE_BYTES, MADV_DONTDUMP);
	*ret_locked = mlock(p, KEY_PAGE_BYTES) == 0;
	return p;
}

void vault__keyring_free(struct keyring *k)
{
	if (!k)
		return;
	OPENSSL_cleanse(k, KEY_PAGE_BYTES);
	munlock(k, KEY_PAGE_BYTES);
	munmap(k, KEY_PAGE_BYTES);
}

void vault__keyring_kcv(const uint8_t key[KEY_BYTES], uint8_t out[KCV_BYTES])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned md_len = 0;

	HMAC(EVP_sha256(), key, KEY_BYTES, (const uint8_t *)KCV_LABEL, strlen(KCV_LABEL), md,
	     &md_len);
	memcpy(out, md, KCV_BYTES);
	OPENSSL_cleanse(md, sizeof(md));
}

int vault__keyring_hmac_slot(const struct keyring *k, uint32_t id)
{
	for (uint32_t i = 0; i < k->n_hmac; i++)
		if (k->hmac[i].id == id)
			return (int)i;
	return -TSW_E_NOT_FOUND;
}

int vault__keyring_slot(const struct keyring *k, uint32_t id)
{
	uint32_t n = __atomic_load_n(&k->n_pan, __ATOMIC_ACQUIRE);

	for (uint32_t i = 0; i < n; i++)
		if (k->pan[i].id == id)
			return (int)i;
	return -TSW_E_NOT_FOUND;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_hex_key(const char *s, size_t len, uint8_t out[KEY_BYTES])
{
	if (len != 2 * KEY_BYTES)
		return -TSW_E_BAD_KEY;
	for (size_t i = 0; i < KEY_BYTES; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -TSW_E_BAD_KEY;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* Parses the file text into a scratch ring (all or nothing). */
static int parse_keys(char *text, struct keyring *k)
{
	char *save = NULL;

	memset(k, 0, sizeof(*k));
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[4] = {0};
		int nf = 0;
		char *fs = NULL;

		if (line[0] == '#' || line[0] == '\0')
			continue;
		for (char *w = strtok_r(line, " \t\r", &fs); w && nf < 4;
		     w = strtok_r(NULL, " \t\r", &fs))
			f[nf++] = w;
		if ((nf == 2 || nf == 3) && strcmp(f[0], "hmac") == 0) {
			char *end = NULL;
			unsigned long id = nf == 2 ? 1 : strtoul(f[1], &end, 10);

			if ((end && *end) || id == 0 || id > UINT32_MAX ||
			    k->n_hmac >= TSW_VAULT_INDEX_KEYS_MAX ||
			    vault__keyring_hmac_slot(k, (uint32_t)id) >= 0)
				return -TSW_E_BAD_KEY;
			if (parse_hex_key(f[nf - 1], strlen(f[nf - 1]), k->hmac[k->n_hmac].key) < 0)
				return -TSW_E_BAD_KEY;
			k->hmac[k->n_hmac++].id = (uint32_t)id;
		} else if (nf == 3 && strcmp(f[0], "pan") == 0) {
			char *end = NULL;
			unsigned long id = strtoul(f[1], &end, 10);

			if (*end || id == 0 || id > UINT32_MAX || k->n_pan >= TSW_VAULT_KEYS_MAX ||
			    vault__keyring_slot(k, (uint32_t)id) >= 0)
				return -TSW_E_BAD_KEY;
			if (parse_hex_key(f[2], strlen(f[2]), k->pan[k->n_pan].key) < 0)
				return -TSW_E_BAD_KEY;
			k->pan[k->n_pan].id = (uint32_t)id;
			if (k->n_pan == 0 || id > k->pan[k->current].id)
				k->current = k->n_pan;
			k->n_pan++;
		} else {
			return -TSW_E_BAD_KEY;
		}
	}
	if (k->n_hmac == 0 || k->n_pan == 0)
		return -TSW_E_BAD_KEY;
	return 0;
}

/* Reads the key file, refusing anything group/other can access or
 * another user owns. */
static int read_key_file(const char *path, char *buf, size_t cap, size_t *ret_len)
{
	struct stat st;
	ssize_t n;
	size_t len = 0;
	int r = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -TSW_E_BAD_KEY;
	if (fstat(fd, &st) < 0 ||
	    tsw_harden_check_stat(path, &st, TSW_HARDEN_SECRET, NULL, 0) < 0 ||
	    st.st_size >= (off_t)cap) {
		r = -TSW_E_BAD_KEY;
		goto out_close;
	}
	while ((n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	if (n < 0) {
		r = -errno;
		goto out_close;
	}
	buf[len] = '\0';
	*ret_len = len;
out_close:
	close(fd);
	return r;
}

static void hex_key(const uint8_t key[KEY_BYTES], char *out)
{
	static const char hx[] = "0123456789abcdef";

	for (size_t i = 0; i < KEY_BYTES; i++) {
		out[2 * i] = hx[key[i] >> 4];
		out[2 * i + 1] = hx[key[i] & 15];
	}
	out[2 * KEY_BYTES] = '\0';
}

/* fsyncs the directory holding path, so a rename or create in it is
 * durable (the file's own fsync does not cover its directory entry). */
static int sync_dir_of(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;
	int fd, r = 0;

	if (n >= sizeof(dir))
		return -ENAMETOOLONG;
	if (slash && n == 0)
		n = 1; /* "/file" */
	memcpy(dir, slash ? path : ".", slash ? n : 1);
	dir[slash ? n : 1] = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Writes k, less the PAN key skip_id and the index key skip_hmac (0:
 * none), to path durably: a temp
 * file written and fsynced, renamed over path, then the directory fsynced
 * (replace); or created with O_EXCL, fsynced, directory fsynced. Once this
 * returns 0 the new file survives a crash or power loss. */
static int write_key_file(const struct keyring *k, const char *path, bool replace, uint32_t skip_id,
			  uint32_t skip_hmac)
{
	char text[KEY_FILE_MAX_BYTES];
	char hex[2 * KEY_BYTES + 1];
	char tmp[4096];
	size_t len = 0;
	int fd, r = 0;

	len += (size_t)snprintf(text + len, sizeof(text) - len,
				"# tokswitch vault keys: secret, keep mode 0600\n");
	for (uint32_t i = 0; i < k->n_hmac && len < sizeof(text); i++) {
		if (k->hmac[i].id == skip_hmac)
			continue;
		hex_key(k->hmac[i].key, hex);
		if (k->hmac[i].id == 1) /* the form files had before index rekeys */
			len += (size_t)snprintf(text + len, sizeof(text) - len, "hmac %s\n", hex);
		else
			len += (size_t)snprintf(text + len, sizeof(text) - len, "hmac %u %s\n",
						k->hmac[i].id, hex);
	}
	for (uint32_t i = 0; i < k->n_pan && len < sizeof(text); i++) {
		if (k->pan[i].id == skip_id)
			continue;
		hex_key(k->pan[i].key, hex);
		len += (size_t)snprintf(text + len, sizeof(text) - len, "pan %u %s\n", k->pan[i].id,
					hex);
	}
	OPENSSL_cleanse(hex, sizeof(hex));
	if (len >= sizeof(text)) {
		r = -TSW_E_NO_SPACE;
		goto out_wipe;
	}
	if (replace) {
		if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
			r = -ENAMETOOLONG;
			goto out_wipe;
		}
		fd =
		    open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, KEY_FILE_MODE);
	} else {
		fd =
		    open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, KEY_FILE_MODE);
	}
	if (fd < 0) {
		r = -errno;
		goto out_wipe;
	}
	if (fchmod(fd, KEY_FILE_MODE) < 0 || write(fd, text, len) != (ssize_t)len ||
	    fsync(fd) < 0) {
		r = errno ? -errno : -EIO;
		close(fd);
		unlink(replace ? tmp : path);
		goto out_wipe;
	}
	close(fd);
	if (replace && rename(tmp, path) < 0) {
		r = -errno;
		unlink(tmp);
		goto out_wipe;
	}
	r = sync_dir_of(path);
out_wipe:
	OPENSSL_cleanse(text, sizeof(text));
	return r;
}

static int fresh_key(uint8_t key[KEY_BYTES])
{
	return RAND_priv_bytes(key, KEY_BYTES) == 1 ? 0 : -EIO;
}

int vault__keyring_load(const char *key_file, bool create, struct keyring **ret_keys,
			bool *ret_locked)
{
	char text[KEY_FILE_MAX_BYTES];
	size_t len = 0;
	bool locked = false;
	struct keyring *k = keyring_alloc(&locked);
	int r;

	if (!k)
		return -ENOMEM;
	r = read_key_file(key_file, text, sizeof(text), &len);
	if (r == -ENOENT && create) {
		memset(k, 0, sizeof(*k));
		if (fresh_key(k->hmac[0].key) < 0 || fresh_key(k->pan[0].key) < 0) {
			r = -EIO;
			goto out_free;
		}
		k->hmac[0].id = 1;
		k->n_hmac = 1;
		k->pan[0].id = 1;
		k->n_pan = 1;
		k->current = 0;
		r = write_key_file(k, key_file, false, 0, 0);
		if (r < 0)
			goto out_free;
	} else if (r < 0) {
		goto out_free;
	} else {
		r = parse_keys(text, k);
		OPENSSL_cleanse(text, sizeof(text));
		if (r < 0)
			goto out_free;
	}
	*ret_keys = k;
	*ret_locked = locked;
	return 0;
out_free:
	OPENSSL_cleanse(text, sizeof(text));
	vault__keyring_free(k);
	return r == -ENOENT ? -TSW_E_BAD_KEY : r;
}

int vault__keyring_reload(struct keyring *k, const char *key_file, keyring_check_fn check,
			  void *ctx)
{
	char text[KEY_FILE_MAX_BYTES];
	size_t len = 0;
	bool locked = false;
	struct keyring *fresh = keyring_alloc(&locked);
	int r;

	if (!fresh)
		return -ENOMEM;
	r = read_key_file(key_file, text, sizeof(text), &len);
	if (r < 0)
		goto out_free;
	r = parse_keys(text, fresh);
	if (r < 0)
		goto out_free;
	/* only PAN keys are taken: the index keys are tokvault's (an index
	 * rekey is refused to a tokvault that started before it) */
	/* all or nothing: every key the vault knows must match its check
	 * value before any is used */
	for (uint32_t i = 0, added = 0; i < fresh->n_pan; i++) {
		int c;

		if (vault__keyring_slot(k, fresh->pan[i].id) >= 0)
			continue;
		c = check(ctx, fresh->pan[i].id, fresh->pan[i].key);
		if (c < 0) {
			r = c;
			goto out_free;
		}
		if (c == 0 && k->n_pan + ++added > TSW_VAULT_KEYS_MAX) {
			r = -TSW_E_FULL;
			goto out_free;
		}
	}
	for (uint32_t i = 0; i < fresh->n_pan; i++) {
		uint32_t n = k->n_pan;

		if (vault__keyring_slot(k, fresh->pan[i].id) >= 0 ||
		    check(ctx, fresh->pan[i].id, fresh->pan[i].key) != 0)
			continue;
		k->pan[n] = fresh->pan[i];
		if (fresh->pan[i].id > k->pan[k->current].id)
			__atomic_store_n(&k->current, n, __ATOMIC_RELEASE);
		__atomic_store_n(&k->n_pan, n + 1, __ATOMIC_RELEASE);
	}
out_free:
	OPENSSL_cleanse(text, sizeof(text));
	vault__keyring_free(fresh);
	return r;
}

int vault__keyring_add_key(struct keyring *k, const char *key_file, uint32_t *ret_id)
{
	uint32_t n = k->n_pan;
	uint32_t id = 0;
	int r;

	if (n >= TSW_VAULT_KEYS_MAX)
		return -TSW_E_FULL;
	for (uint32_t i = 0; i < n; i++)
		if (k->pan[i].id > id)
			id = k->pan[i].id;
	if (id == UINT32_MAX)
		return -TSW_E_FULL;
	id++;
	if (fresh_key(k->pan[n].key) < 0)
		return -EIO;
	k->pan[n].id = id;
	__atomic_store_n(&k->n_pan, n + 1, __ATOMIC_RELEASE); /* the slot is complete */
	r = write_key_file(k, key_file, true, 0, 0);
	if (r < 0) {
		__atomic_store_n(&k->n_pan, n, __ATOMIC_RELEASE);
		OPENSSL_cleanse(&k->pan[n], sizeof(k->pan[n]));
		return r;
	}
	__atomic_store_n(&k->current, n, __ATOMIC_RELEASE);
	*ret_id = id;
	return 0;
}

int vault__keyring_remove_key(struct keyring *k, const char *key_file, uint32_t id)
{
	int slot = vault__keyring_slot(k, id);

	if (slot < 0)
		return -TSW_E_NOT_FOUND;
	if ((uint32_t)slot == __atomic_load_n(&k->current, __ATOMIC_ACQUIRE))
		return -EBUSY;
	/* the slot stays in memory (readers index slots without a lock);
	 * only the file loses the key */
	return write_key_file(k, key_file, true, id, 0);
}

int vault__keyring_add_hmac(struct keyring *k, const char *key_file, uint32_t *ret_id)
{
	uint32_t n = k->n_hmac, id = 0;
	int r;

	if (n >= TSW_VAULT_INDEX_KEYS_MAX)
		return -TSW_E_FULL;
	for (uint32_t i = 0; i < n; i++)
		if (k->hmac[i].id > id)
			id = k->hmac[i].id;
	if (id == UINT32_MAX)
		return -TSW_E_FULL;
	if (fresh_key(k->hmac[n].key) < 0)
		return -EIO;
	k->hmac[n].id = ++id;
	k->n_hmac = n + 1;
	r = write_key_file(k, key_file, true, 0, 0);
	if (r < 0) {
		k->n_hmac = n;
		OPENSSL_cleanse(&k->hmac[n], sizeof(k->hmac[n]));
		return r;
	}
	*ret_id = id;
	return 0;
}

int vault__keyring_remove_hmac(struct keyring *k, const char *key_file, uint32_t id)
{
	int slot = vault__keyring_hmac_slot(k, id);
	int r;

	if (slot < 0)
		return -TSW_E_NOT_FOUND;
	if ((uint32_t)slot == k->hmac_current)
		return -EBUSY;
	r = write_key_file(k, key_file, true, 0, id);
	if (r < 0)
		return r;
	/* out of memory too, so a later rewrite does not bring it back (only
	 * tokvault's own ring ever changes its index keys) */
	for (uint32_t i = (uint32_t)slot; i + 1 < k->n_hmac; i++)
		k->hmac[i] = k->hmac[i + 1];
	k->n_hmac--;
	OPENSSL_cleanse(&k->hmac[k->n_hmac], sizeof(k->hmac[k->n_hmac]));
	if (k->hmac_current > (uint32_t)slot)
		k->hmac_current--;
	return 0;
}
