#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tsw/error.h"
#include "tsw/log.h"

enum tsw_log_level tsw_log_level = TSW_LOG_INFO;

static const char *const level_names[TSW_LOG_MAX] = {
	[TSW_LOG_DEBUG] = "debug", [TSW_LOG_INFO] = "info", [TSW_LOG_WARN] = "warn",
	[TSW_LOG_ERROR] = "error", [TSW_LOG_CRIT] = "crit",
};

enum { LOG_LINE_MAX = 1024 };

void tsw_log(enum tsw_log_level level, const char *event, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t n;
	int r;

	if (level < tsw_log_level || level >= TSW_LOG_MAX)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	r = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, level_names[level], event);
	n = r < 0 ? 0 : (size_t)r;
	if (fmt && fmt[0] && n < sizeof(line) - 2) {
		line[n++] = ' ';
		va_start(ap, fmt);
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
		if (r > 0)
			n += (size_t)r;
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line: atomic for pipes and files below PIPE_BUF. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

int tsw_log_level_parse(const char *s, enum tsw_log_level *ret_level)
{
	for (int i = 0; i < TSW_LOG_MAX; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*ret_level = (enum tsw_log_level)i;
			return 0;
		}
	}
	return -TSW_E_CONFIG;
}

int tsw_mask_pan(const char *digits, unsigned len, char *out, unsigned cap)
{
	if (cap < len + 1)
		return -TSW_E_NO_SPACE;
	for (unsigned i = 0; i < len; i++)
		out[i] = (len > 10 && (i < 6 || i >= len - 4)) ? digits[i] : '*';
	out[len] = '\0';
	return 0;
}
