/* Fuzz target: config files (tsw_config_load: inih and every key's
 * parser, then tsw_config_check, src/common/config.c).
 *
 * Input: the file's bytes, written to a temp file. Checked invariants,
 * each a trap:
 * - a load returns 0 or -TSW_E_CONFIG; a failed one leaves the settings
 *   untouched and names a line of the file (1..lines) and a
 *   NUL-terminated reason;
 * - no reason (load or check) quotes a value: values can be secrets;
 * - a loaded config passes or fails tsw_config_check with -TSW_E_CONFIG,
 *   and compares equal to itself (issuers, restart-only keys);
 * - loading is deterministic: twice from the defaults gives the same
 *   issuers and restart-only keys.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tsw/config.h"
#include "tsw/error.h"

#define CONFIG_VALUE_MIN 8   /* values this long are looked for in reasons */
#define CONFIG_NAME_MAX 1024 /* bytes of a "section.key" looked for */

static size_t count_lines(const uint8_t *data, size_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < size; i++)
		n += data[i] == '\n';
	return n + (size && data[size - 1] != '\n');
}

/* One line of the file as inih splits it: the key before
 * the first '=' or ':', the value after it, both trimmed. Returns false
 * for a line without a separator, comments and section lines. */
static bool split_line(const uint8_t *data, size_t at, size_t end, size_t *ret_k, size_t *ret_ke,
		       size_t *ret_v, size_t *ret_ve)
{
	size_t k = at, sep = at, v, e;

	while (k < end && isspace(data[k]))
		k++;
	if (k == end || data[k] == ';' || data[k] == '#' || data[k] == '[')
		return false;
	while (sep < end && data[sep] != '=' && data[sep] != ':')
		sep++;
	if (sep == end)
		return false;
	for (v = sep + 1; v < end && isspace(data[v]); v++)
		;
	for (e = end; e > v && isspace(data[e - 1]); e--)
		;
	*ret_k = k;
	*ret_ke = sep;
	*ret_v = v;
	*ret_ve = e;
	return true;
}

static size_t line_end(const uint8_t *data, size_t size, size_t at)
{
	const uint8_t *nl = memchr(data + at, '\n', size - at);

	return nl ? (size_t)(nl - data) : size;
}

/* True when the bytes occur in a key or section name of the file, or in
 * "section.key" as reasons write them: a reason may name those. */
static bool in_a_name(const uint8_t *data, size_t size, const uint8_t *p, size_t n)
{
	uint8_t name[CONFIG_NAME_MAX];
	size_t sec = 0; /* bytes of the section's name in name[] */

	for (size_t at = 0, end; at < size; at = end + 1) {
		size_t k, ke, v, ve, len;

		end = line_end(data, size, at);
		for (k = at; k < end && isspace(data[k]); k++)
			;
		/* a section line, as inih reads one: '[' first */
		if (k < end && data[k] == '[') {
			const uint8_t *close = memchr(data + k, ']', end - k);
			size_t from = k + 1;
			size_t to = close ? (size_t)(close - data) : end;

			if (fuzz_has(data + at, end - at, p, n))
				return true;

			sec = to - from < sizeof(name) / 2 ? to - from : sizeof(name) / 2;
			memcpy(name, data + from, sec);
			continue;
		}
		if (!split_line(data, at, end, &k, &ke, &v, &ve))
			continue;
		if (fuzz_has(data + k, ke - k, p, n))
			return true;
		len = ke - k < sizeof(name) - sec - 1 ? ke - k : sizeof(name) - sec - 1;
		name[sec] = '.';
		memcpy(name + sec + 1, data + k, len);
		if (fuzz_has(name, sec + 1 + len, p, n))
			return true;
	}
	return false;
}

/* True when the value holds a digit or a '/': reasons name the words a
 * key takes ("standin.modes must list contactless, chip, ..."), never a
 * number, path or secret. */
static bool not_a_word(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((p[i] >= '0' && p[i] <= '9') || p[i] == '/')
			return true;
	return false;
}

/* True when reason quotes a value of the file: the text after '=' or ':'
 * of a line that is not a comment, trimmed, at least CONFIG_VALUE_MIN
 * bytes, holding a digit or '/', that is not also in a section or key
 * name (those may be named). */
static bool quotes_value(const uint8_t *data, size_t size, const char *reason)
{
	size_t rl = strlen(reason);

	for (size_t at = 0, end; at < size; at = end + 1) {
		size_t k, ke, v, ve;

		end = line_end(data, size, at);
		if (split_line(data, at, end, &k, &ke, &v, &ve) && ve - v >= CONFIG_VALUE_MIN &&
		    not_a_word(data + v, ve - v) && fuzz_has(reason, rl, data + v, ve - v) &&
		    !in_a_name(data, size, data + v, ve - v))
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tsw_config *def = malloc(sizeof(*def)), *a = malloc(sizeof(*a)),
			  *b = malloc(sizeof(*b));
	struct tsw_config_error err;
	char reason[TSW_CONFIG_REASON_MAX];
	const char *path;
	int r;

	fuzz_check(def && a && b);
	tsw_config_defaults(def);
	memcpy(a, def, sizeof(*a));
	memcpy(b, def, sizeof(*b));
	path = fuzz_write("tokswitch.conf", data, size, 0600);
	memset(&err, 0x5a, sizeof(err));
	r = tsw_config_load(path, a, &err);
	fuzz_check(r == 0 || r == -TSW_E_CONFIG);
	fuzz_check(tsw_config_load(path, b, NULL) == r);
	/* (compared by the config's own functions: bytes after a string's NUL
	 * are not part of it) */
	fuzz_check(tsw_config_issuers_equal(a, b) &&
		   tsw_config_restart_only_changed(a, b, NULL, 0) == 0);
	if (r < 0) {
		fuzz_check(memcmp(a, def, sizeof(*a)) == 0);
		fuzz_check(err.line >= 1 && err.line <= count_lines(data, size));
		fuzz_check(memchr(err.reason, '\0', sizeof(err.reason)) != NULL);
		fuzz_check(!quotes_value(data, size, err.reason));
		goto out;
	}
	r = tsw_config_check(a, reason, sizeof(reason));
	fuzz_check(r == 0 || r == -TSW_E_CONFIG);
	if (r < 0)
		fuzz_check(memchr(reason, '\0', sizeof(reason)) != NULL &&
			   !quotes_value(data, size, reason));
	fuzz_check(tsw_config_issuers_equal(a, a));
	fuzz_check(tsw_config_restart_only_changed(a, a, NULL, 0) == 0);
	(void)tsw_config_restart_only_changed(def, a, reason, sizeof(reason));
	fuzz_check(memchr(reason, '\0', sizeof(reason)) != NULL);
out:
	free(def);
	free(a);
	free(b);
	return 0;
}
