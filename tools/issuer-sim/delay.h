/* Answers held back for a simulated latency: a binary min-heap on the due
 * time, so the loop waits until the earliest one instead of sleeping per
 * message. Each entry owns a copy of the framed answer. */
#ifndef TSW_TOOLS_DELAY_H
#define TSW_TOOLS_DELAY_H

#include <stddef.h>
#include <stdint.h>

struct delayed {
	uint64_t due_ns;
	uint32_t slot, gen; /* connection the answer belongs to */
	uint32_t len;
	uint8_t *data; /* framed answer, owned */
};

struct delay_heap {
	struct delayed *e;
	size_t n, cap, max;
};

/* Returns 0, -TSW_E_FULL (max entries held) or -ENOMEM. Copies data. */
int delay_push(struct delay_heap *h, uint64_t due_ns, uint32_t slot, uint32_t gen,
	       const uint8_t *data, uint32_t len);

/* Earliest due time, or UINT64_MAX when empty. */
uint64_t delay_next_ns(const struct delay_heap *h);

/* Pops the earliest entry into *ret (caller frees ret->data). Returns 1,
 * or 0 when empty. */
int delay_pop(struct delay_heap *h, struct delayed *ret);

void delay_free(struct delay_heap *h);

#endif
