/* The terminal of tokswitch-top's live view. */
#ifndef TOP_TERM_H
#define TOP_TERM_H

#include "view.h"

/* Saves the terminal's settings, turns off line buffering and echo (and
 * the suspend key: a stopped view would leave the terminal raw), and
 * switches to the alternate screen without a cursor. Returns 0 or
 * -errno (-ENOTTY: stdin or stdout is not a terminal). */
int top_term_enter(void);

/* Puts back what top_term_enter() changed; safe to call when it did
 * not run, and more than once. */
void top_term_leave(void);

/* Draws s from the top left corner, each line cut to the terminal's
 * width and the screen to its height. */
void top_term_draw(const struct top_screen *s);

#endif
