/* Plain VT100/xterm escapes and termios rather than ncurses: the view
 * redraws a whole screen of text lines each interval, so curses' window
 * model and update optimisation would buy nothing, and every terminal
 * an operator reaches a switch from (xterm and its kin, tmux, screen,
 * the Linux console) reads these few sequences. No new library. */
#include "term.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#define ALT_SCREEN_ON "\033[?1049h\033[?25l"
#define ALT_SCREEN_OFF "\033[?25h\033[?1049l"
#define HOME "\033[H"
#define CLEAR_EOL "\033[K"
#define CLEAR_BELOW "\033[J"
#define FRAME_BYTES (TOP_SCREEN_LINES_MAX * (TOP_SCREEN_LINE_BYTES + 8) + 16)

static struct termios saved;
static bool entered;

static void write_all(const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(STDOUT_FILENO, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* the terminal is gone: nothing to draw on */
		buf += n;
		len -= (size_t)n;
	}
}

int top_term_enter(void)
{
	struct termios raw;

	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
		return -ENOTTY;
	if (tcgetattr(STDIN_FILENO, &saved) < 0)
		return -errno;
	raw = saved;
	raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
	raw.c_cc[VMIN] = 1;
	raw.c_cc[VTIME] = 0;
	raw.c_cc[VSUSP] = _POSIX_VDISABLE;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0)
		return -errno;
	entered = true;
	write_all(ALT_SCREEN_ON, strlen(ALT_SCREEN_ON));
	return 0;
}

void top_term_leave(void)
{
	if (!entered)
		return;
	write_all(ALT_SCREEN_OFF, strlen(ALT_SCREEN_OFF));
	tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	entered = false;
}

void top_term_draw(const struct top_screen *s)
{
	static char frame[FRAME_BYTES];
	struct winsize ws = {0};
	size_t len = 0, rows = 24, cols = 80;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		rows = ws.ws_row;
		cols = ws.ws_col;
	}
	memcpy(frame, HOME, strlen(HOME));
	len = strlen(HOME);
	for (size_t i = 0; i < s->n && i < rows; i++) {
		size_t n = strnlen(s->line[i], cols - 1); /* the last column: pending wrap */

		memcpy(frame + len, s->line[i], n);
		len += n;
		memcpy(frame + len, CLEAR_EOL, strlen(CLEAR_EOL));
		len += strlen(CLEAR_EOL);
		/* no newline after the bottom row: it would scroll the screen */
		if (i + 1 < s->n && i + 1 < rows) {
			memcpy(frame + len, "\r\n", 2);
			len += 2;
		}
	}
	memcpy(frame + len, CLEAR_BELOW, strlen(CLEAR_BELOW));
	len += strlen(CLEAR_BELOW);
	write_all(frame, len);
}
