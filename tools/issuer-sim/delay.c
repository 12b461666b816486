#include "delay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/error.h"

int delay_push(struct delay_heap *h, uint64_t due_ns, uint32_t slot, uint32_t gen,
	       const uint8_t *data, uint32_t len)
{
	struct delayed d = {.due_ns = due_ns, .slot = slot, .gen = gen, .len = len};
	size_t i;

	if (h->n >= h->max)
		return -TSW_E_FULL;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 1024;
		struct delayed *e = realloc(h->e, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		h->e = e;
		h->cap = cap;
	}
	d.data = malloc(len);
	if (!d.data)
		return -ENOMEM;
	memcpy(d.data, data, len);
	i = h->n++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (h->e[parent].due_ns <= due_ns)
			break;
		h->e[i] = h->e[parent];
		i = parent;
	}
	h->e[i] = d;
	return 0;
}

uint64_t delay_next_ns(const struct delay_heap *h)
{
	return h->n ? h->e[0].due_ns : UINT64_MAX;
}

int delay_pop(struct delay_heap *h, struct delayed *ret)
{
	struct delayed last;
	size_t i = 0;

	if (h->n == 0)
		return 0;
	*ret = h->e[0];
	last = h->e[--h->n];
	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->e[c + 1].due_ns < h->e[c].due_ns)
			c++;
		if (last.due_ns <= h->e[c].due_ns)
			break;
		h->e[i] = h->e[c];
		i = c;
	}
	if (h->n)
		h->e[i] = last;
	return 1;
}

void delay_free(struct delay_heap *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->e[i].data);
	free(h->e);
	memset(h, 0, sizeof(*h));
}
