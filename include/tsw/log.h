/* Structured logging: one line per event, key=value pairs, to stderr.
 *
 * Only top-level code (the server's main, the control plane, the tools)
 * logs; library code returns errors. Nothing here masks for you: callers
 * pass masked values (tsw_mask_pan()) or none. Never log on the per-message
 * path.
 */
#ifndef TSW_LOG_H
#define TSW_LOG_H

#include <stdarg.h>

enum tsw_log_level {
	TSW_LOG_DEBUG,
	TSW_LOG_INFO,
	TSW_LOG_WARN,
	TSW_LOG_ERROR,
	TSW_LOG_CRIT,
	TSW_LOG_MAX
};

/* The one mutable global besides signal flags. Default TSW_LOG_INFO. */
extern enum tsw_log_level tsw_log_level;

/* Writes "ts=... level=... event=EVENT " then the formatted key=value text
 * and a newline, with one write(2) so lines from threads never interleave.
 * Lines longer than 1 KiB are cut. */
void tsw_log(enum tsw_log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Parses "debug|info|warn|error|crit". Returns 0 or -TSW_E_CONFIG. */
int tsw_log_level_parse(const char *s, enum tsw_log_level *ret_level);

/* Masks a PAN or token: first 6 and last 4 digits kept, the rest '*'
 * (numbers of 10 digits or fewer are fully masked). Writes a NUL-terminated
 * string of len characters into out (cap >= len + 1). Returns 0 or
 * -TSW_E_NO_SPACE. */
int tsw_mask_pan(const char *digits, unsigned len, char *out, unsigned cap);

#endif
