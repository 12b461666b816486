/* Structured logging: one line per event on stderr, in one of two formats
 * (tsw_log_format):
 *
 *   text  ts=2025-12-06T00:00:00.123Z level=warn event=NAME key=value ...
 *   json  {"ts":"2025-12-06T00:00:00.123Z","level":"warn","event":"NAME","key":value,...}
 *
 * Callers pass the fields as logfmt text (key=value separated by spaces;
 * a value with spaces, quotes or '=' goes in double quotes, escaped with
 * tsw_log_quote()). This file is the one place that turns it into a line:
 * text writes it as it is, json parses it into the same keys in the same
 * order (a bare integer without a leading zero becomes a JSON number,
 * every other value a string, a bare key true).
 *
 * Only top-level code (the server's main, the control plane, the io
 * backends, the tools) logs; library code returns errors (the engine
 * queues events that its backend logs). Nothing here masks for you:
 * callers pass masked values (tsw_mask_pan()) or none. Never log on the
 * per-message path.
 */
#ifndef TSW_LOG_H
#define TSW_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum tsw_log_level {
	TSW_LOG_DEBUG,
	TSW_LOG_INFO,
	TSW_LOG_WARN,
	TSW_LOG_ERROR,
	TSW_LOG_CRIT,
	TSW_LOG_MAX
};

enum tsw_log_format {
	TSW_LOG_TEXT, /* logfmt */
	TSW_LOG_JSON, /* one JSON object per line */
	TSW_LOG_FORMAT_MAX
};

/* The mutable globals besides signal flags: what is written and how. Set
 * by main at start and on SIGHUP. Defaults TSW_LOG_INFO, TSW_LOG_TEXT.
 * Read with relaxed atomic loads (workers log while a SIGHUP changes
 * them): a change once threads run is a relaxed atomic store. */
extern enum tsw_log_level tsw_log_level;
extern enum tsw_log_format tsw_log_format;

/* Text lines longer than this are cut; JSON lines are cut at twice this,
 * at a field boundary, ending in "truncated":true. */
#define TSW_LOG_LINE_MAX 1024

/* True when a line of level would be written: callers that must build
 * the fields first (the engine's events) skip the work otherwise. */
static inline bool tsw_log_enabled(enum tsw_log_level level)
{
	return level >= __atomic_load_n(&tsw_log_level, __ATOMIC_RELAXED) && level < TSW_LOG_MAX;
}

/* Writes one line of the event with the printf-formatted logfmt fields
 * (fmt NULL or "": none) in tsw_log_format, with one write(2), so lines
 * from threads never interleave. */
void tsw_log(enum tsw_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Renders one line as tsw_log() writes it: format, wall-clock time ts,
 * level, event, and the logfmt fields (NULL: none) into buf (cap bytes),
 * ending in '\n' and NUL-terminated. Returns its length without the NUL
 * (0 when cap is below 64). Pure: tests use it. */
size_t tsw_log_render(char *buf, size_t cap, enum tsw_log_format format, const struct timespec *ts,
		      enum tsw_log_level level, const char *event, const char *fields);

/* Writes s into buf (cap bytes, NUL-terminated) escaped for a quoted logfmt
 * value: '"' and '\' get a backslash, newline, CR and tab become \n \r \t,
 * other control characters \xHH. A long s is cut before the escape that
 * does not fit. Returns buf. Use it for any value not made by the switch
 * itself (file paths, config text). */
const char *tsw_log_quote(const char *s, char *buf, size_t cap);

/* Parses "debug|info|warn|error|crit". Returns 0 or -TSW_E_CONFIG. */
int tsw_log_level_parse(const char *s, enum tsw_log_level *ret_level);

/* Parses "text|json". Returns 0 or -TSW_E_CONFIG (*ret untouched). */
int tsw_log_format_parse(const char *s, enum tsw_log_format *ret_format);
/* "text", "json"; "?" out of range. */
const char *tsw_log_format_name(enum tsw_log_format format);

/* Masks a PAN or token: first 6 and last 4 digits kept, the rest '*'
 * (numbers of 10 digits or fewer are fully masked). Writes a NUL-terminated
 * string of len characters into out (cap >= len + 1). Returns 0 or
 * -TSW_E_NO_SPACE. */
int tsw_mask_pan(const char *digits, unsigned len, char *out, unsigned cap);

#endif
