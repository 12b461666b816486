/* tokvault internals shared by its verbs. */
#ifndef TOKVAULT_H
#define TOKVAULT_H

#include "tsw/vault.h"

/* demo: a synthetic vault and the bench client's token list. */
int demo_run(struct tsw_vault *v, unsigned long count, const char *out_path, const char *bin);

#endif
